"""Policies alone: the config refuses what cannot work, and the pieces a request goes
through (controls sent, digests, model globs, TTL, nested namespaces) hold for all inputs."""

from __future__ import annotations

import hashlib
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.cli import describe
from app.config import ConfigError, PolicySettings, load_settings
from app.control import CONTROL_NAMES
from app.errors import ProxyError
from app.policy import CACHE_CONTROL_DIRECTIVES, CONTROLLABLE, Policy, controls_sent, key_digest
from app.request import Head
from app.types import MAX_TTL_S, valid_namespace

PROPERTY = settings(max_examples=300, deadline=None)
HEX = "ab" * 32


def load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    load_settings(path)


@pytest.mark.parametrize(
    "text, named",
    [
        ("policies: [{name: a}, {name: a}]", "repeated: a"),
        ("policies: [{name: 'has space'}]", "policies.0.name"),
        ("policies: [{name: a, match: {credential_sha256: ['sk-live-key']}}]", "SHA-256"),
        ("policies: [{name: a, match: {credential_sha256: []}}]", "at least one digest"),
        ("policies: [{name: a, match: {header: {authorization: 'Bearer x'}}}]", "credential_sha256"),
        ("policies: [{name: a, match: {header: {'x team': ml}}}]", "not a header name"),
        ("policies: [{name: a, match: {header: {x-team: ''}}}]", "non-empty"),
        ("policies: [{name: a, match: {model: ''}}]", "empty glob"),
        ("policies: [{name: a, match: {team: ml}}]", "policies.0.match.team"),
        ("policies: [{name: a, allow_controls: [ttl], deny_controls: [no-cache]}]", "not both"),
        ("policies: [{name: a, deny_controls: [no_cache]}]", "unknown cache control 'no_cache'"),
        ("policies: [{name: a, ttl_s: 600, max_ttl_s: 60}]", "longer than max_ttl_s"),
        ("policies: [{name: a, mode: sometimes}]", "policies.0.mode"),
        ("policies: [{name: a, semantic: true}]", "cache.semantic is not configured"),
        ("policies: [{name: a, namespace: 'a/b'}]", "policies.0.namespace"),
        ("policies: [{name: a, namespace: t}, {name: b, namespace: t.x}]", "reach 'b'"),
        ("cache: {namespace: t.x}\npolicies: [{name: a, namespace: t}]", "reach 'cache'"),
        ("policies: [{name: a, stale_if_error_s: -1}]", "policies.0.stale_if_error_s"),
    ],
)
def test_the_config_refuses(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match="(?s)" + named.replace(".", r"\.").replace("(", r"\(")):
        load(tmp_path, text)


def test_nesting_namespaces_are_fine_when_requests_cannot_name_one(tmp_path: Path) -> None:
    load(tmp_path, "policies: [{name: a, namespace: t, deny_controls: [namespace]}, {name: b, namespace: t.x}]")
    load(tmp_path, "policies: [{name: a, namespace: t, allow_controls: [ttl]}, {name: b, namespace: t.x}]")


def test_policies_from_the_environment_shown_by_check_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCACHE_POLICIES", '[{"name": "ml", "match": {"header": {"X-Team": "ml"}}}, {"name": "rest"}]')
    settings = load_settings(None)
    assert [p.name for p in settings.policies] == ["ml", "rest"]
    assert settings.policies[0].match.header == {"x-team": "ml"}
    assert "policies (the first that matches applies): ml, rest" in describe(settings)


def test_a_policy_as_configured() -> None:
    policy = Policy.of(
        PolicySettings(
            name="ml",
            match={"credential_sha256": [HEX.upper()], "header": {"X-Team": " ml "}, "model": "gpt-4o*"},  # type: ignore[arg-type]
            allow_controls=("ttl", "namespace"),
            stale_if_error_s=30,
        )
    )
    assert policy.credentials == {HEX}
    assert policy.headers == ((b"x-team", b"ml"),)
    assert policy.forbidden == CONTROLLABLE - {"ttl", "namespace"}
    assert (policy.stale_if_error_s, policy.stale_while_revalidate_s) == (30, None)
    assert policy.header == (b"x-cache-policy", b"ml") and policy.line == b"x-cache-policy: ml\r\n"


def test_key_digest_is_the_sha256_of_the_key_alone() -> None:
    key = b"sk-proj-abc123"
    expected = hashlib.sha256(key).hexdigest()
    for name, value in (
        (b"authorization", b"Bearer " + key),
        (b"authorization", b"bearer " + key),
        (b"x-api-key", key),
        (b"api-key", key),
    ):
        assert key_digest(name, value) == expected, (name, value)
    assert key_digest(b"x-api-key", b"Bearer " + key) != expected  # only authorization has a scheme


control_names = st.sampled_from(sorted(CONTROL_NAMES))
directives = st.sampled_from(sorted(CACHE_CONTROL_DIRECTIVES))


@PROPERTY
@given(
    headers=st.sets(control_names),
    body=st.sets(control_names),
    directives=st.sets(directives),
    noise=st.dictionaries(st.text(min_size=1, max_size=12).map(lambda s: "x" + s), st.text(max_size=10), max_size=3),
)
def test_controls_sent_are_those_of_every_source(
    headers: set[str], body: set[str], directives: set[str], noise: dict[str, str]
) -> None:
    header_controls = {**{k: v for k, v in noise.items() if k not in CONTROL_NAMES}, **{n: "1" for n in headers}}
    cache_control = ", ".join([*(f"{d}=5" for d in directives), "private", "min-fresh=3"])
    sent = controls_sent(header_controls, cache_control, {n: True for n in body})
    assert sent == headers | body | {CACHE_CONTROL_DIRECTIVES[d] for d in directives}
    assert sent <= CONTROLLABLE


@PROPERTY
@given(
    forbidden=st.sets(st.sampled_from(sorted(CONTROLLABLE))),
    headers=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4),
    cache_control=st.none() | st.text(max_size=40),
    body=st.none() | st.integers() | st.dictionaries(st.text(max_size=20), st.booleans(), max_size=4),
)
def test_check_refuses_exactly_the_forbidden_controls(
    forbidden: set[str], headers: dict[str, str], cache_control: str | None, body: object
) -> None:
    policy = Policy.of(PolicySettings(name="p", deny_controls=tuple(forbidden)))
    head = Head([], headers, cache_control=cache_control)
    refused = controls_sent(headers, cache_control, body) & forbidden
    if refused:
        with pytest.raises(ProxyError) as raised:
            policy.check(head, body)
        assert raised.value.status == 400 and raised.value.code == "policy_forbids_control"
        assert "'p'" in raised.value.message and repr(min(refused)) in raised.value.message
    else:
        policy.check(head, body)


@PROPERTY
@given(glob=st.text(alphabet="gpt-4o*?[]!", min_size=1, max_size=10), model=st.text(alphabet="gpt-4o", max_size=12))
def test_model_globs_match_as_fnmatchcase(glob: str, model: str) -> None:
    policy = Policy.of(PolicySettings(name="p", match={"model": glob}))  # type: ignore[arg-type]
    expected = fnmatchcase(model, glob)
    assert policy.matches_model(model) == expected
    assert policy.matches_model(model) == expected  # and remembered alike


seconds = st.none() | st.floats(min_value=0, max_value=MAX_TTL_S)
positive = st.none() | st.floats(min_value=1e-3, max_value=MAX_TTL_S)


@PROPERTY
@given(asked=seconds, default=positive, ttl_s=positive, max_ttl_s=positive)
def test_ttl_never_exceeds_the_maximum(
    asked: float | None, default: float | None, ttl_s: float | None, max_ttl_s: float | None
) -> None:
    if ttl_s is not None and max_ttl_s is not None and ttl_s > max_ttl_s:
        ttl_s = max_ttl_s
    policy = Policy.of(PolicySettings(name="p", ttl_s=ttl_s, max_ttl_s=max_ttl_s))
    ttl = policy.ttl(asked, default)
    wanted = asked if asked is not None else ttl_s if ttl_s is not None else default
    if max_ttl_s is None:
        assert ttl == wanted
    else:
        assert ttl is not None and ttl <= max_ttl_s
        assert ttl == (wanted if wanted is not None and wanted <= max_ttl_s else max_ttl_s)


@PROPERTY
@given(
    mine=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True),
    asked=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True),
)
def test_a_nested_namespace_stays_inside_the_policys(mine: str, asked: str) -> None:
    policy = Policy.of(PolicySettings(name="p", namespace=mine))
    try:
        nested = policy.nested(asked)
    except ProxyError as error:
        assert error.status == 400 and len(mine) + 1 + len(asked) > 128
    else:
        assert valid_namespace(nested) and nested.startswith(mine + ".") and nested.endswith(asked)
