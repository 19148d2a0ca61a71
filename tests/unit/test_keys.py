import hashlib

from app import keys
from app.keys import cache_key, credential_scope, key_of_json


def key(params, **kw):
    args = {"call_type": "chat_completions", "model": "gpt-4o", "scope": "s", "namespace": None}
    args.update(kw)
    return cache_key(args["call_type"], None, {**params, "model": args["model"]}, args["scope"], args["namespace"])


MESSAGES = [{"role": "user", "content": "hi", "name": "x"}]


def test_key_is_sha256_hex():
    k = key({"messages": MESSAGES})
    assert len(k) == 64 and int(k, 16) >= 0


def test_key_order_does_not_matter_at_any_depth():
    a = key({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2})
    b = key({"temperature": 0.2, "messages": [{"content": "hi", "role": "user"}]})
    assert a == b


def test_stream_and_cache_fields_do_not_change_the_key():
    base = key({"messages": MESSAGES})
    assert key({"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}) == base
    assert key({"messages": MESSAGES, "cache": {"ttl": 5}}) == base


def test_every_other_parameter_changes_the_key():
    base = key({"messages": MESSAGES})
    assert key({"messages": MESSAGES, "temperature": 0.5}) != base
    assert key({"messages": MESSAGES, "seed": 1}) != base
    assert key({"messages": MESSAGES + [{"role": "user", "content": "more"}]}) != base
    assert key({"messages": MESSAGES}, model="gpt-4o-mini") != base
    assert key({"messages": MESSAGES}, call_type="completions") != base
    assert key({"messages": MESSAGES}, scope="other") != base


def test_integral_floats_equal_ints():
    # Numbers are made exact (and 1.0 an int) where the body is parsed, at every depth.
    one = key_of_json("chat_completions", b'{"temperature": 1, "tools": [{"maximum": 2}]}')
    assert one == key_of_json("chat_completions", b'{"temperature": 1.0, "tools": [{"maximum": 2.00}]}')
    assert one == key_of_json("chat_completions", b'{"temperature": 1e0, "tools": [{"maximum": 0.2e1}]}')


def test_namespace_prefixes_and_changes_the_key():
    plain = key({"messages": MESSAGES})
    spaced = key({"messages": MESSAGES}, namespace="team-a")
    assert spaced.startswith("team-a/") and spaced.split("/")[1] != plain


def test_credential_scope_hides_the_secret():
    scope = credential_scope([(b"authorization", b"Bearer sk-secret")])
    assert "sk-secret" not in scope
    assert scope == credential_scope([(b"authorization", b"Bearer sk-secret")])
    assert scope != credential_scope([(b"authorization", b"Bearer sk-other")])
    assert credential_scope([]) == "anonymous"


def test_credential_scope_covers_every_credential_header():
    bearer = credential_scope([(b"authorization", b"Bearer A")])
    azure = credential_scope([(b"api-key", b"A")])
    anthropic = credential_scope([(b"x-api-key", b"A")])
    assert len({bearer, azure, anthropic, "anonymous"}) == 4
    assert credential_scope([(b"api-key", b"B")]) != azure
    # An empty credential is no credential; two headers together are one scope, in any order.
    assert credential_scope([(b"authorization", b"")]) == "anonymous"
    both = credential_scope([(b"api-key", b"A"), (b"x-api-key", b"B")])
    assert both == credential_scope([(b"x-api-key", b"B"), (b"api-key", b"A")]) != azure


def test_a_model_name_cannot_pass_for_a_caching_group():
    grouped = cache_key("chat_completions", "a+b", {"model": "a"}, None, None)
    assert grouped == cache_key("chat_completions", "a+b", {"model": "b"}, None, None)
    assert grouped != cache_key("chat_completions", None, {"model": "a+b"}, None, None)


def test_an_absent_model_is_not_a_null_one():
    assert key_of_json("chat_completions", b"{}") != key_of_json("chat_completions", b'{"model": null}')


def test_a_key_is_the_hash_of_its_canonical_forms_one_spelling() -> None:
    parts = ("chat_completions", None, {"b": 1, "a": [1.5], "stream": True}, "scope", "team", "q=1", [("h", "v")])
    canonical = keys.canonical(*parts)
    assert canonical[-1] == {"b": 1, "a": [1.5]}  # `stream` is no part of it
    assert keys.material(canonical) == b'["chat_completions",null,"scope","team","q=1",[["h","v"]],{"a":[1.5],"b":1}]'
    digest = hashlib.sha256(keys.material(canonical)).hexdigest()
    assert keys.key_of(canonical) == keys.cache_key(*parts) == f"team/{digest}"
