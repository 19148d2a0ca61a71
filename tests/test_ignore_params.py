"""Key shaping: parameters named in cache.ignore_params or the ignore-params control leave the key."""

from __future__ import annotations

import logging

import pytest

from app.control import parse_control
from app.errors import ProxyError


def test_the_control_takes_a_comma_list_or_a_list() -> None:
    assert parse_control({"ignore-params": "user, metadata"}, None, None).ignore_params == {"user", "metadata"}
    assert parse_control(None, None, {"ignore-params": ["user"]}).ignore_params == {"user"}
    for bad in ({"ignore-params": ","}, {"ignore-params": "a,,b"}):
        with pytest.raises(ProxyError):
            parse_control(bad, None, None)
    with pytest.raises(ProxyError):
        parse_control(None, None, {"ignore-params": [1]})


async def test_ignored_params_share_a_key(asgi, fake, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        client = await asgi(cache={"ignore_params": ["user", "temperature"]})
    assert "temperature" in caplog.text and "change the answer" in caplog.text
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    first = await client.post("/v1/chat/completions", json={**body, "user": "alice", "metadata": {"a": "1"}})
    second = await client.post("/v1/chat/completions", json={**body, "user": "bob", "metadata": {"a": "1"}})
    assert second.headers["x-cache-status"] == "hit"
    other = await client.post("/v1/chat/completions", json={**body, "user": "bob", "metadata": {"a": "2"}})
    assert other.headers["x-cache-status"] == "miss"
    ignoring = {"x-cache-ignore-params": "metadata"}
    stored = await client.post("/v1/chat/completions", json={**body, "metadata": {"a": "3"}}, headers=ignoring)
    again = await client.post("/v1/chat/completions", json={**body, "metadata": {"a": "4"}}, headers=ignoring)
    assert (stored.headers["x-cache-status"], again.headers["x-cache-status"]) == ("miss", "hit")
    assert first.status_code == 200 and fake.chat_calls() == 3
