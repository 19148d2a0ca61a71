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
        {}, None,
        {"ttl": 5, "namespace": "ns1", "no-cache": True, "no-store": False, "use-cache": True,
         "similarity-threshold": 0.8},
    )
    assert (control.ttl_s, control.namespace, control.no_cache, control.no_store, control.use_cache) == (
        5, "ns1", True, False, True
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
