"""What every part of the converter shares: its warnings, and how it reads values.

Each part (models, cache, settings) warns through `warn`, which keeps one line per
distinct message, in the order first met. Values are read through `secret` (LiteLLM's
environment references → ours), `number` and `boolean`; none of them raises: a number or
boolean that cannot be used becomes None, with a warning.

Secrets
    LiteLLM's `os.environ/VAR` becomes our `${VAR}` (expanded when llmcache starts; an
    unset VAR is then a startup error naming it). `environment_variables:` is not
    copied: export those variables where llmcache runs.
"""

from __future__ import annotations

import math
import re
from typing import Any

from app.config import kind_of
from app.litellm_import.result import LiteLLMImportError
from app.litellm_import.vocabulary import ENV_PREFIX

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConverterBase:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.model_names: set[str] = set()  # the model_list names that became routes
        self.fixed_keys = False  # some route carries its own upstream api_key

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def secret(self, value: Any, where: str) -> Any:
        """`os.environ/VAR` → `${VAR}`, through lists and mappings."""
        if isinstance(value, str) and value.startswith(ENV_PREFIX):
            name = value[len(ENV_PREFIX) :]
            if ENV_NAME.match(name):
                return "${" + name + "}"
            self.warn(f"{where}: {value!r} is not a plain environment variable name; kept as a literal")
            return value
        if isinstance(value, str) and "${" in value:
            self.warn(
                f"{where}: the literal {value!r} contains ${{...}}, which llmcache expands from its "
                "environment at startup"
            )
            return value
        if isinstance(value, list):
            return [self.secret(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.secret(v, f"{where}.{k}") for k, v in value.items()}
        return value

    def number(self, value: Any, where: str, *, integer: bool = False, positive: bool = True) -> Any:
        """A number (or a `${VAR}` left for startup); None with a warning when unusable."""
        if isinstance(value, str) and value.startswith("${"):
            return value
        try:
            if isinstance(value, bool):
                raise ValueError
            number = int(value) if integer else float(value)
            if not math.isfinite(number) or (integer and isinstance(value, float) and value != int(value)):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            self.warn(f"{where}: {value!r} is not a number; not mapped")
            return None
        if positive and number <= 0:
            self.warn(f"{where}: {value!r} must be greater than 0; not mapped")
            return None
        if not integer and number == int(number):
            return int(number)
        return number

    def boolean(self, value: Any, where: str) -> Any:
        if isinstance(value, bool) or (isinstance(value, str) and value.startswith("${")):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.strip().lower() in ("true", "1", "yes")
        self.warn(f"{where}: {value!r} is not a boolean; not mapped")
        return None


def mapping(value: Any, where: str) -> dict[str, Any]:
    """A section that must be a mapping when present; absent is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LiteLLMImportError(f"{where} must be a mapping, not {kind_of(value)}")
    return value
