"""What an answer says it cost upstream: its `usage`, read into one `Usage` per API dialect.

Each API counts differently. OpenAI's chat and legacy completions report
`prompt_tokens` and `completion_tokens`, the prompt's cached part in
`prompt_tokens_details.cached_tokens`; the Responses API `input_tokens` and
`output_tokens`, with `input_tokens_details.cached_tokens`. Anthropic's `input_tokens`
leaves out what its prompt cache served or wrote: the input of a `Usage` is
`input_tokens + cache_read_input_tokens + cache_creation_input_tokens`, and its cached
input is `cache_read_input_tokens` (billed at the cached-input price; cache writes are
counted at the plain input price, below the 1.25× Anthropic bills them, so money saved
is never overstated). Anthropic sends no total: it is input + output.

The numbers come from an upstream and are not trusted: anything but a non-negative
integer counts as 0, a count past what an entry stores is cut to it, the cached part
never exceeds the input. Reading never raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.codec import NO_USAGE, Usage

# What an entry's header holds per count (codec: unsigned 32 bits).
MAX_TOKENS = 0xFFFFFFFF


def tokens(value: Any) -> int:
    """A token count as an upstream sent it, made safe: an int in [0, MAX_TOKENS]."""
    if type(value) is not int:  # bool, float, str, None, ...: not a count
        return 0
    return min(max(value, 0), MAX_TOKENS)


def _field(mapping: Any, name: str) -> Any:
    return mapping.get(name) if isinstance(mapping, dict) else None


def _usage(answer: dict[str, Any] | None) -> dict[str, Any] | None:
    usage = _field(answer, "usage")
    return usage if isinstance(usage, dict) else None


def of(input_tokens: int, output_tokens: int, cached: int, total: int = 0) -> Usage:
    """A Usage from counts already made safe; a missing total is input + output."""
    return Usage(
        total or min(input_tokens + output_tokens, MAX_TOKENS),
        input_tokens,
        output_tokens,
        min(cached, input_tokens),
    )


def total_only(answer: dict[str, Any] | None) -> Usage:
    """`usage.total_tokens` and nothing else: call types without a price per token kind."""
    usage = _usage(answer)
    return NO_USAGE if usage is None else Usage(tokens(usage.get("total_tokens")))


def _openai(answer: dict[str, Any] | None, input_name: str, output_name: str) -> Usage:
    """OpenAI's usage: input and output under the names of its API, the cached part of
    the input in `<input>_details.cached_tokens`."""
    usage = _usage(answer)
    if usage is None:
        return NO_USAGE
    cached = tokens(_field(usage.get(input_name + "_details"), "cached_tokens"))
    return of(tokens(usage.get(input_name)), tokens(usage.get(output_name)), cached, tokens(usage.get("total_tokens")))


def openai_chat(answer: dict[str, Any] | None) -> Usage:
    """Chat and legacy completions."""
    return _openai(answer, "prompt_tokens", "completion_tokens")


def responses(answer: dict[str, Any] | None) -> Usage:
    return _openai(answer, "input_tokens", "output_tokens")


def anthropic(answer: dict[str, Any] | None) -> Usage:
    usage = _usage(answer)
    if usage is None:
        return NO_USAGE
    read = tokens(usage.get("cache_read_input_tokens"))
    written = tokens(usage.get("cache_creation_input_tokens"))
    input_tokens = min(tokens(usage.get("input_tokens")) + read + written, MAX_TOKENS)
    return of(input_tokens, tokens(usage.get("output_tokens")), read)


def embeddings(answer: dict[str, Any] | None) -> Usage:
    """Input only: `prompt_tokens` (the total where it is missing)."""
    usage = _usage(answer)
    if usage is None:
        return NO_USAGE
    total = tokens(usage.get("total_tokens"))
    prompt = tokens(usage.get("prompt_tokens")) if "prompt_tokens" in usage else total
    return of(prompt, 0, 0, total)


def added(usages: Iterable[Usage]) -> Usage:
    """The sum of several entries' usage (an embeddings batch served from several)."""
    total = input_tokens = output_tokens = cached = 0
    for usage in usages:
        total += usage.total
        input_tokens += usage.input
        output_tokens += usage.output
        cached += usage.cached_input
    return Usage(total, input_tokens, output_tokens, cached)
