"""`llmcache import-litellm`: turn a LiteLLM proxy config into an llmcache config.

The input is a LiteLLM proxy `config.yaml` (`model_list`, `litellm_settings`,
`router_settings`, `general_settings`, ...). The output is our config (the one
`app.config` loads) as plain data, plus one warning line for everything that could not
be carried over. Nothing is dropped silently: every key that is not mapped is named in a
warning. The conversion never reads the environment; the result is meant to pass
`llmcache check-config` once the `${VAR}`s it references are set.

Each module's docstring says how its part is mapped:
    base        the warnings; `os.environ/VAR` → `${VAR}`, numbers, booleans
    models      model_list → models (and the `*` deployment → upstream)
    cache       litellm_settings.cache / cache_params → cache: mode, ttl, call types,
                the type → tiers table; router_settings.caching_groups
    tiers       the redis, s3, gcs, azure-blob and disk tiers
    semantic    the redis-semantic and qdrant-semantic types → cache.semantic
    settings    request_timeout → upstream.timeout_s; a warning for everything else
    vocabulary  LiteLLM's names, as data
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.config import kind_of, read_yaml_mapping
from app.litellm_import.converter import Converter
from app.litellm_import.result import Conversion, LiteLLMImportError

__all__ = ["Conversion", "LiteLLMImportError", "convert", "convert_file", "render"]


def convert(litellm: dict[str, Any]) -> Conversion:
    """Convert a parsed LiteLLM proxy config; raise LiteLLMImportError if it is malformed."""
    if not isinstance(litellm, dict):
        raise LiteLLMImportError(f"a LiteLLM proxy config must be a mapping at the top level, not {kind_of(litellm)}")
    return Converter().run(litellm)


def convert_file(path: str | Path) -> Conversion:
    """Read and convert a LiteLLM proxy config file."""
    data = read_yaml_mapping(path, LiteLLMImportError, "a LiteLLM proxy config must be a mapping at the top level")
    if data is None:
        raise LiteLLMImportError(f"{path} is empty")
    try:
        conversion = convert(data)
    except LiteLLMImportError as exc:
        raise LiteLLMImportError(f"{path}: {exc}") from None
    conversion.source = str(path)
    return conversion


def render(conversion: Conversion) -> str:
    """Our config as YAML text, headed by a comment (source, notes, warnings)."""
    lines = ["# llmcache config, converted from a LiteLLM proxy config by `llmcache import-litellm`"]
    if conversion.source:
        lines.append(f"# source: {conversion.source}")
    lines += [
        "# Check it with `llmcache check-config FILE` (every ${VAR} below must be set).",
        "# Entries cached by LiteLLM are not readable by llmcache: the cache starts empty.",
        "# Unless cache.share_across_keys is true, entries are scoped to each caller's credential",
        "# (LiteLLM shared its exact cache across all keys).",
    ]
    if conversion.warnings:
        lines.append(f"# {len(conversion.warnings)} warning(s):")
        lines += [f"#   - {w}" for w in conversion.warnings]
    body: str = yaml.safe_dump(
        conversion.config, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )
    return "\n".join(lines) + "\n" + body
