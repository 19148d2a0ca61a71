"""The price table: matching a model, the config's prices over the defaults, the cost."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.codec import Usage
from app.config import MAX_PRICE, Settings
from app.prices import Price, Prices, configured_rows, default_rows, row

DEFAULTS = Path(__file__).resolve().parents[2] / "app" / "prices.json"

A = Price(1.0, 2.0, 0.5)
B = Price(3.0, 4.0, 1.5)
C = Price(5.0, 6.0, 2.5)
D = Price(7.0, 8.0, 3.5)


def test_cost_is_uncached_input_cached_input_and_output_per_million() -> None:
    price = Price(input=2.5, output=10.0, cached_input=1.25)
    assert price.usd(Usage(1250, 1000, 250, 400)) == pytest.approx((600 * 2.5 + 400 * 1.25 + 250 * 10.0) / 1e6)


def test_exact_name_then_snapshot_then_most_specific_glob() -> None:
    prices = Prices(defaults=[("gpt-4o", A), ("gpt-4o-*", B), ("gpt-*", C), ("gpt-4o-2024-05-13", D)])
    assert prices.of("gpt-4o") is A
    assert prices.of("gpt-4o-2024-08-06") is A  # a dated snapshot is priced as its model
    assert prices.of("gpt-4o-2024-05-13") is D  # unless the snapshot has a price of its own
    assert prices.of("gpt-4o-audio-preview") is B  # the longer glob
    assert prices.of("gpt-5") is C
    assert prices.of("claude-3-haiku") is None


def test_anthropic_snapshots_and_latest() -> None:
    prices = Prices(defaults=[("claude-sonnet-4", A), ("claude-3-5-haiku", B)])
    assert prices.of("claude-sonnet-4-20250514") is A
    assert prices.of("claude-3-5-haiku-latest") is B
    assert prices.of("claude-sonnet-4-5") is None  # a different model, not a snapshot


def test_configured_prices_win_over_the_defaults() -> None:
    prices = Prices([("gpt-4o*", A)], defaults=[("gpt-4o", B), ("o3", C)])
    assert prices.of("gpt-4o") is A  # the user's glob over the default's exact name
    assert prices.of("o3") is C  # what the config does not price, the defaults still do


def test_a_renamed_model_is_priced_as_the_upstream_bills_it() -> None:
    prices = Prices(defaults=[("gpt-4o-mini", A)], upstream_name={"fast": "gpt-4o-mini"}.get)
    assert prices.of("fast") is A


def test_unknown_model_saves_nothing_counted() -> None:
    assert Prices(defaults=[("gpt-4o", A)]).usd("mystery", Usage(10, 10, 0, 0)) == 0.0


def test_lookups_are_remembered_and_bounded() -> None:
    prices = Prices(defaults=[("m-*", A)])
    for n in range(5000):
        prices.of(f"m-{n}")
    assert len(prices._known) == 4096
    assert prices.of("m-4999") is A  # past the bound: still found, just not remembered


def test_configured_rows_default_cached_input_to_input() -> None:
    settings = Settings(prices=[{"model": "x-*", "input": 2, "output": 3}])
    assert configured_rows(settings.prices) == [("x-*", Price(2.0, 3.0, 2.0))]


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "x", "input": -1, "output": 1},
        {"model": "x", "input": float("nan"), "output": 1},
        {"model": "x", "input": float("inf"), "output": 1},
        {"model": "x", "input": True, "output": 1},
        {"model": "x", "input": "2.5", "output": 1},
        {"model": "x", "input": 1, "output": 1, "cached_input": MAX_PRICE + 1},
        {"model": "", "input": 1, "output": 1},
        {"model": "x", "input": 1},
        {"model": "x", "input": 1, "output": 1, "cache": 1},
    ],
)
def test_config_refuses_a_bad_price(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Settings(prices=[bad])


@pytest.mark.parametrize(
    "bad", [{"model": "x", "input": -1, "output": 1}, {"model": "x", "input": 1}, {"input": 1, "output": 1}, [1]]
)
def test_the_defaults_file_reader_refuses_a_bad_row(bad: Any) -> None:
    with pytest.raises(ValueError):
        row(bad)


def test_the_defaults_file_names_its_date_and_sources() -> None:
    document = json.loads(DEFAULTS.read_text())
    assert {s["provider"] for s in document["sources"]} == {"OpenAI", "Anthropic"}
    assert all(s["as_of"] and s["pages"] for s in document["sources"])
    rows = default_rows()
    assert len({name for name, _ in rows}) == len(rows)  # no model priced twice
    assert all(p.cached_input <= p.input for _, p in rows)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.floats(0, MAX_PRICE),
    st.floats(0, MAX_PRICE),
    st.floats(0, MAX_PRICE),
)
def test_any_cost_is_finite_and_not_negative(
    input_tokens: int, output_tokens: int, cached: int, a: float, b: float, c: float
) -> None:
    cost = Price(a, b, c).usd(Usage(0, input_tokens, output_tokens, cached))
    assert math.isfinite(cost) and cost >= 0


def test_the_readme_example_is_a_valid_config() -> None:
    readme = (DEFAULTS.parents[1] / "README.md").read_text()
    section = readme.split("## Money saved", 1)[1].split("\n## ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    settings = Settings(**yaml.safe_load(example))
    prices = Prices(configured_rows(settings.prices), defaults=[])
    assert prices.of("ft:gpt-4o-mini:acme:1") == Price(0.3, 1.2, 0.15)
    assert prices.of("my-local-llama") == Price(0.05, 0.05, 0.05)
