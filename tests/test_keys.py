from app.keys import cache_key, credential_scope


def key(params, **kw):
    args = {"call_type": "chat_completions", "model": "gpt-4o", "scope": "s", "namespace": None}
    args.update(kw)
    return cache_key(args["call_type"], args["model"], params, args["scope"], args["namespace"])


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
    assert key({"messages": MESSAGES, "temperature": 1}) == key({"messages": MESSAGES, "temperature": 1.0})


def test_namespace_prefixes_and_changes_the_key():
    plain = key({"messages": MESSAGES})
    spaced = key({"messages": MESSAGES}, namespace="team-a")
    assert spaced.startswith("team-a/") and spaced.split("/")[1] != plain


def test_credential_scope_hides_the_secret():
    scope = credential_scope("Bearer sk-secret")
    assert "sk-secret" not in scope
    assert scope == credential_scope("Bearer sk-secret")
    assert scope != credential_scope("Bearer sk-other")
    assert credential_scope(None) == "anonymous"
