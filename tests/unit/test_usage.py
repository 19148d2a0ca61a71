"""Reading an answer's usage: each API dialect's fields, and hostile values made safe."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import usage
from app.codec import Usage, decode, encode, new_entry

MAX = usage.MAX_TOKENS
READERS = (usage.total_only, usage.openai_chat, usage.responses, usage.anthropic, usage.embeddings)


def test_chat_completions() -> None:
    answer = {
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 64},
        }
    }
    assert usage.openai_chat(answer) == Usage(150, 120, 30, 64)


def test_legacy_completions_have_no_details() -> None:
    assert usage.openai_chat({"usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}) == Usage(
        12, 5, 7, 0
    )


def test_responses() -> None:
    answer = {
        "usage": {
            "input_tokens": 800,
            "input_tokens_details": {"cached_tokens": 200},
            "output_tokens": 120,
            "total_tokens": 920,
        }
    }
    assert usage.responses(answer) == Usage(920, 800, 120, 200)


def test_anthropic_input_adds_what_the_prompt_cache_read_and_wrote() -> None:
    answer = {
        "usage": {
            "input_tokens": 100,
            "cache_read_input_tokens": 300,
            "cache_creation_input_tokens": 50,
            "output_tokens": 40,
        }
    }
    assert usage.anthropic(answer) == Usage(490, 450, 40, 300)


def test_embeddings_are_input_only() -> None:
    assert usage.embeddings({"usage": {"prompt_tokens": 9, "total_tokens": 9}}) == Usage(9, 9, 0, 0)
    assert usage.embeddings({"usage": {"total_tokens": 4}}) == Usage(4, 4, 0, 0)


def test_a_streamed_answer_without_usage_counts_nothing() -> None:
    for read in READERS:
        assert read({"choices": []}) == Usage()
        assert read(None) == Usage()
        assert read({"usage": None}) == Usage()


@pytest.mark.parametrize(
    ("value", "count"),
    [(5, 5), (-5, 0), (True, 0), (5.0, 0), ("5", 0), (None, 0), (2**40, MAX), ([5], 0)],
)
def test_tokens(value: Any, count: int) -> None:
    assert usage.tokens(value) == count


def test_cached_never_exceeds_input() -> None:
    answer = {"usage": {"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 99}}}
    assert usage.openai_chat(answer).cached_input == 10


def test_added() -> None:
    assert usage.added([Usage(3, 2, 1, 1), Usage(10, 10, 0, 4)]) == Usage(13, 12, 1, 5)
    assert usage.added([]) == Usage()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=30), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "input_tokens",
        "output_tokens",
        "input_tokens_details",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cached_tokens",
    ]
)
USAGES = st.dictionaries(FIELDS, JSON | st.integers() | st.dictionaries(st.just("cached_tokens"), JSON), max_size=8)


@given(st.one_of(JSON, USAGES), st.sampled_from(READERS))
def test_any_usage_reads_into_counts_an_entry_stores(value: Any, read: Any) -> None:
    found = read({"usage": value})
    for count in (found.total, found.input, found.output, found.cached_input):
        assert type(count) is int and 0 <= count <= MAX
    assert found.cached_input <= found.input
    stored = decode(encode(new_entry(b"{}", "application/json", None, found)))
    assert stored.usage == found
