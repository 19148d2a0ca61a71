"""What a semantic match may differ in: only the final user message.

Everything else — call type, model group, every parameter, the system prompt, earlier
turns, namespace and credential scope — goes into a context fingerprint, and a match
is only searched among entries with the same fingerprint (a filter inside the vector
query, so a better-scoring entry of another context can never crowd out or leak in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class Question:
    text: str
    context: dict[str, Any]  # the request with the final text blanked out


def final_user_text(content: Any) -> str | None:
    """The text of a user message; None when it carries anything but text (images, audio)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                return None
            texts.append(part["text"])
        return "\n".join(texts)
    return None


def question_of(call_type: str, payload: dict[str, Any]) -> Question | None:
    """Split a request into its final question and its context; None if not matchable."""
    if call_type == "chat_completions":
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
            return None
        last = messages[-1]
        if last.get("role") != "user":
            return None
        text = final_user_text(last.get("content"))
        if not text or not text.strip():
            return None
        blanked = {**last, "content": None}
        return Question(text, {**payload, "messages": [*messages[:-1], blanked]})
    if call_type == "completions":
        prompt = payload.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return None
        return Question(prompt, {**payload, "prompt": None})
    return None
