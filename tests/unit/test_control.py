import pytest

from app.control import parse_control
from app.errors import ProxyError


def test_defaults():
    control = parse_control({}, None, None)
    assert control.ttl_s is None and not control.no_cache and control.use_cache is None


def test_header_wins_over_body_and_cache_control():
    control = parse_control({"ttl": "10", "s-maxage": "3"}, "max-age=5", {"ttl": 20, "s-maxage": 9})
    assert control.ttl_s == 10
    assert control.max_age_s == 3


def test_cache_control_wins_over_body():
    control = parse_control({}, "s-maxage=5, no-store", {"s-maxage": 9})
    assert control.max_age_s == 5 and control.no_store


def test_body_controls():
    control = parse_control(
        {},
        None,
        {
            "ttl": 5,
            "namespace": "ns1",
            "no-cache": True,
            "no-store": False,
            "use-cache": True,
            "similarity-threshold": 0.8,
        },
    )
    assert (control.ttl_s, control.namespace, control.no_cache, control.no_store, control.use_cache) == (
        5,
        "ns1",
        True,
        False,
        True,
    )
    assert control.similarity_threshold == 0.8


def test_cache_control_directives():
    control = parse_control({}, "no-cache, only-if-cached, max-age=7, private", None)
    assert control.no_cache and control.only_if_cached and control.max_age_s == 7


@pytest.mark.parametrize(
    "headers, cache_control, body",
    [
        ({"ttl": "abc"}, None, None),
        ({"ttl": "-1"}, None, None),
        ({"ttl": "nan"}, None, None),
        ({"s-maxage": "x"}, None, None),
        ({"no-cache": "maybe"}, None, None),
        ({"similarity-threshold": "1.5"}, None, None),
        ({"namespace": "bad space"}, None, None),
        ({}, "max-age=abc", None),
        ({}, None, {"ttl": "soon"}),
        ({}, None, {"ttl": True}),
        ({}, None, {"unknown": 1}),
        ({}, None, "not an object"),
    ],
)
def test_bad_values_are_400(headers, cache_control, body):
    with pytest.raises(ProxyError) as raised:
        parse_control(headers, cache_control, body)
    assert raised.value.status == 400


# --- edge cases ----------------------------------------------------------------------------


def test_cache_control_directives_are_case_and_space_insensitive() -> None:
    control = parse_control({}, " No-Cache ,,  MAX-AGE = 7 ,only-if-cached, No-Store", None)
    assert control.no_cache and control.no_store and control.only_if_cached
    assert control.max_age_s == 7


def test_a_quoted_max_age_and_s_maxage_are_read() -> None:
    assert parse_control({}, 'max-age="12"', None).max_age_s == 12
    assert parse_control({}, "s-maxage=0", None).max_age_s == 0


def test_unknown_directives_and_headers_are_ignored() -> None:
    control = parse_control({"unknown": "x", "ttl": "5"}, "private, max-stale=10, stale-while-revalidate", None)
    assert control.ttl_s == 5 and control.max_age_s is None and not control.no_cache


def test_the_last_max_age_directive_wins() -> None:
    assert parse_control({}, "max-age=5, s-maxage=9", None).max_age_s == 9


def test_a_header_can_switch_off_what_the_body_switched_on() -> None:
    control = parse_control({"no-cache": "false", "use-cache": "OFF"}, "no-cache", {"no-cache": True})
    assert not control.no_cache and control.use_cache is False


@pytest.mark.parametrize(
    "spelling, value",
    [
        ("true", True),
        (" YES ", True),
        ("1", True),
        ("On", True),
        ("false", False),
        ("no", False),
        ("0", False),
        ("off", False),
    ],
)
def test_boolean_spellings(spelling: str, value: bool) -> None:
    assert parse_control({"no-store": spelling}, None, None).no_store is value


@pytest.mark.parametrize("value, seconds", [("0", 0), (" 5 ", 5), ("2.5", 2.5), ("315360000", 315_360_000)])
def test_ttl_bounds_that_are_accepted(value: str, seconds: float) -> None:
    assert parse_control({"ttl": value}, None, None).ttl_s == seconds
    assert parse_control({}, None, {"ttl": float(value)}).ttl_s == seconds


def test_similarity_threshold_bounds() -> None:
    assert parse_control({"similarity-threshold": "0"}, None, None).similarity_threshold == 0
    assert parse_control({}, None, {"similarity-threshold": 1}).similarity_threshold == 1


def test_namespace_lengths() -> None:
    assert parse_control({"namespace": "a" * 128}, None, None).namespace == "a" * 128
    assert parse_control({}, None, {"namespace": "team-a.v1_2"}).namespace == "team-a.v1_2"


def test_an_empty_body_control_is_the_defaults() -> None:
    assert parse_control({}, "", {}) == parse_control(None, None, None)


@pytest.mark.parametrize(
    "headers, cache_control, body",
    [
        ({"ttl": "315360001"}, None, None),  # past ten years
        ({"ttl": "inf"}, None, None),
        ({"ttl": "1e400"}, None, None),
        ({"ttl": ""}, None, None),
        ({}, None, {"ttl": None}),
        ({}, None, {"ttl": [5]}),
        ({}, "max-age", None),  # a directive that needs a value, without one
        ({}, "max-age=-1", None),
        ({}, "s-maxage=1e400", None),
        ({"no-store": "2"}, None, None),
        ({}, None, {"no-cache": 1}),  # a JSON boolean, or a string spelling one
        ({}, None, {"use-cache": None}),
        ({"similarity-threshold": "-0.1"}, None, None),
        ({}, None, {"similarity-threshold": True}),
        ({"namespace": "a" * 129}, None, None),
        ({"namespace": ""}, None, None),
        ({"namespace": "a/b"}, None, None),
        ({}, None, {"namespace": 7}),
        ({}, None, ["ttl", 5]),
    ],
)
def test_more_bad_values_are_400(headers, cache_control, body) -> None:
    with pytest.raises(ProxyError) as raised:
        parse_control(headers, cache_control, body)
    assert raised.value.status == 400 and raised.value.code == "invalid_cache_control"
