"""Stale answers in parts: the window arithmetic, the controls that set the windows, what
counts as an upstream failure, and the chain keeping and finding expired entries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app import codec
from app.background import Background
from app.coalesce import Flight, Outcome
from app.codec import Entry
from app.config import ConfigError, StaleSettings, load_settings
from app.control import parse_control
from app.errors import ProxyError, internal_error, upstream_timeout, upstream_unreachable
from app.metrics import Metrics
from app.stale import OFF, StaleWindows, Use, upstream_failed, use_of
from app.tiers.chain import Chain
from app.types import MAX_TTL_S
from tests.unit.stubs import StubTier, guard

NOW = 1_000_000.0


def expired_ago(seconds: float, ttl: float = 60.0) -> Entry:
    """An entry whose TTL ended `seconds` before NOW (negative: still live)."""
    expires_at = NOW - seconds
    return Entry(b"{}", "application/json", expires_at - ttl, expires_at)


# --- window arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("staleness", "windows", "use"),
    [
        (-1.0, StaleWindows.configured(10, 30), Use.FRESH),
        (0.0, StaleWindows.configured(10, 30), Use.REVALIDATE),  # expired at its expiry
        (29.9, StaleWindows.configured(10, 30), Use.REVALIDATE),
        (30.0, StaleWindows.configured(10, 30), Use.NONE),  # up to, not at, the window
        (5.0, StaleWindows.configured(60, 10), Use.REVALIDATE),  # both apply: serve now
        (10.0, StaleWindows.configured(60, 10), Use.IF_ERROR),
        (59.9, StaleWindows.configured(60, 10), Use.IF_ERROR),
        (60.0, StaleWindows.configured(60, 10), Use.NONE),
        (0.0, OFF, Use.NONE),
    ],
)
def test_use_of_an_entry_by_how_stale_it_is(staleness: float, windows: StaleWindows, use: Use) -> None:
    assert use_of(expired_ago(staleness), NOW, windows) is use


def test_an_entry_without_expiry_is_never_stale() -> None:
    entry = Entry(b"{}", "application/json", 0.0, None)
    assert use_of(entry, NOW, StaleWindows.configured(10, 10)) is Use.FRESH


def test_tiers_keep_the_larger_configured_window() -> None:
    assert StaleWindows.configured(30, 120).keep_s == 120
    assert StaleWindows.configured(300, 0).keep_s == 300
    assert OFF.keep_s == 0 and OFF.serve_s == 0


def test_a_request_changes_what_it_accepts_not_what_is_kept() -> None:
    configured = StaleWindows.configured(30, 10)
    assert configured.requested(None, None) is configured
    wider = configured.requested(3600, 600)
    assert (wider.if_error_s, wider.while_revalidate_s, wider.keep_s) == (3600, 600, 30)
    off = configured.requested(0, 0)
    assert off.serve_s == 0 and off.keep_s == 30
    assert configured.requested(None, 5) == StaleWindows(30, 5, 30)


def test_a_policy_overrides_the_configured_windows_and_what_is_kept() -> None:
    configured = StaleWindows.configured(30, 10)
    assert configured.overridden(None, None) is configured
    assert configured.overridden(None, 600) == StaleWindows(30, 600, 600)
    assert configured.overridden(0, 0) == OFF


# --- controls ------------------------------------------------------------------------------


def test_cache_control_directives_set_the_windows() -> None:
    control = parse_control({}, "max-stale=30, stale-if-error=600", None)
    assert (control.max_stale_s, control.stale_if_error_s) == (30, 600)


def test_max_stale_without_a_value_accepts_any_staleness() -> None:
    assert parse_control({}, "no-store, max-stale", None).max_stale_s == MAX_TTL_S
    assert parse_control({}, 'MAX-STALE="7"', None).max_stale_s == 7


def test_the_windows_are_unset_unless_asked() -> None:
    control = parse_control({}, "max-age=5, private", None)
    assert control.max_stale_s is None and control.stale_if_error_s is None


def test_header_beats_cache_control_beats_body() -> None:
    body = {"max-stale": 1, "stale-if-error": 2}
    assert parse_control({}, None, body).max_stale_s == 1
    assert parse_control({}, None, body).stale_if_error_s == 2
    control = parse_control({"max-stale": "5"}, "max-stale=3, stale-if-error=4", body)
    assert (control.max_stale_s, control.stale_if_error_s) == (5, 4)


@pytest.mark.parametrize(
    ("headers", "cache_control", "body"),
    [
        ({}, "max-stale=", None),
        ({}, "max-stale=-1", None),
        ({}, "stale-if-error=soon", None),
        ({}, "stale-if-error=nan", None),
        ({}, f"stale-if-error={MAX_TTL_S + 1}", None),
        ({"max-stale": "inf"}, None, None),
        ({"stale-if-error": ""}, None, None),
        ({}, None, {"max-stale": True}),
        ({}, None, {"stale-if-error": [1]}),
        ({}, None, {"stale_if_error": 1}),
    ],
)
def test_bad_windows_are_a_400(headers: dict[str, str], cache_control: str | None, body: object) -> None:
    with pytest.raises(ProxyError) as raised:
        parse_control(headers, cache_control, body)
    assert raised.value.status == 400 and raised.value.code == "invalid_cache_control"


# --- what counts as an upstream failure ----------------------------------------------------


def finished(outcome: Outcome | None = None, error: ProxyError | None = None) -> Flight:
    flight = Flight("k", False, False)
    flight.finish(outcome, error)
    return flight


@pytest.mark.parametrize(("status", "failed"), [(500, True), (503, True), (429, True), (400, False), (404, False)])
def test_upstream_statuses_that_a_stale_answer_hides(status: int, failed: bool) -> None:
    assert upstream_failed(finished(Outcome(status, [], b"{}"))) is failed


def test_a_success_is_no_failure_and_a_cut_one_is() -> None:
    assert not upstream_failed(finished(Outcome(200, [], b"{}")))
    assert upstream_failed(finished(Outcome(200, [], b"", cut=True)))


def test_timeouts_and_unreachable_upstreams_fail_and_our_own_errors_do_not() -> None:
    assert upstream_failed(finished(error=upstream_timeout()))
    assert upstream_failed(finished(error=upstream_unreachable("connection refused")))
    assert not upstream_failed(finished(error=internal_error()))


# --- the chain keeps expired entries for the window, and finds them when asked -------------


def chain_over(*tiers: StubTier, keep_s: float = 0.0) -> Chain:
    metrics = Metrics()
    return Chain([guard(tier, metrics, timeout_s=1) for tier in tiers], Background(), keep_s=keep_s)


def entry_expired(ago: float) -> Entry:
    now = time.time()
    return Entry(b'{"a": 1}', "application/json", now - 60 - ago, now - ago)


async def test_an_expired_entry_is_found_only_within_the_window() -> None:
    tier = StubTier("t", {"k": codec.encode(entry_expired(5))})
    chain = chain_over(tier)
    assert await chain.get("k") is None
    found = await chain.get("k", stale_s=30)
    assert found is not None and found.expired(time.time())
    assert await chain.get("k", stale_s=4) is None
    assert await chain.get("k", max_age_s=10, stale_s=30) is None  # 65 s old: too old for the client


async def test_a_live_entry_in_a_later_tier_beats_a_stale_one_in_front() -> None:
    live = Entry(b'{"a": 2}', "application/json", time.time(), time.time() + 60)
    front = StubTier("front", {"k": codec.encode(entry_expired(5))})
    back = StubTier("back", {"k": codec.encode(live)})
    chain = chain_over(front, back)
    assert await chain.get("k", stale_s=30) == live
    assert codec.decode(front.data["k"]) == live  # promoted over the stale copy


async def test_tiers_keep_an_entry_for_its_ttl_and_the_keep_window() -> None:
    tier = StubTier("t")
    chain = chain_over(tier, keep_s=300)
    live = Entry(b"{}", "application/json", time.time(), time.time() + 60)
    await chain.set_many({"k": live}, durable=True)
    ttl = tier.ttls["k"]
    assert ttl is not None and 355 < ttl <= 360
    await chain.set_many({"j": live}, durable=True, keep_s=0)  # a policy that keeps nothing
    ttl = tier.ttls["j"]
    assert ttl is not None and 55 < ttl <= 60
    assert codec.decode(tier.data["k"]).expires_at == live.expires_at  # the logical expiry is unchanged


async def test_an_entry_expired_past_the_keep_window_is_not_written() -> None:
    tier = StubTier("t")
    chain = chain_over(tier, keep_s=10)
    await chain.set_many({"k": entry_expired(20)}, durable=True)
    await chain.set_many({"j": entry_expired(5)}, durable=True)
    assert "k" not in tier.data and "j" in tier.data


# --- configuration -------------------------------------------------------------------------


def test_the_windows_are_off_by_default() -> None:
    assert load_settings(None).cache.stale == StaleSettings(if_error_s=0, while_revalidate_s=0)


def test_the_windows_come_from_the_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("cache:\n  stale: {if_error_s: 600, while_revalidate_s: 30}\n")
    assert load_settings(config).cache.stale == StaleSettings(if_error_s=600, while_revalidate_s=30)
    monkeypatch.setenv("LLMCACHE_CACHE__STALE__WHILE_REVALIDATE_S", "5")
    assert load_settings(config).cache.stale.while_revalidate_s == 5


@pytest.mark.parametrize(
    ("stale", "message"),
    [
        ("{if_error_s: -1}", "cache.stale.if_error_s"),
        ("{while_revalidate_s: 1e12}", "cache.stale.while_revalidate_s"),
        ("{max_stale_s: 5}", "cache.stale.max_stale_s: unknown key"),
        ("60", "cache.stale"),
    ],
)
def test_bad_windows_stop_the_process(tmp_path: Path, stale: str, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"cache:\n  stale: {stale}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    assert message in str(raised.value)
