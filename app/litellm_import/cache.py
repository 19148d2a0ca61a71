"""The cache: litellm_settings.cache, its cache_params, and router_settings.caching_groups.

litellm_settings.cache / cache_params → cache
    `cache: true` turns caching on. Missing or false: LiteLLM did not cache, so the
    result gets `mode: default_off` (only requests sending `use-cache` are cached) and
    a warning; cache_params, if present, are still converted.
    `type` (default `redis`, as in LiteLLM's proxy) → tiers:
        local            → [local]
        redis            → [local, redis]
        redis-semantic   → [local, redis] + semantic {type: redis}
        qdrant-semantic  → [local] + semantic {type: qdrant}
        s3               → [local, s3]
        gcs              → [local, gcs]
        azure-blob       → [local, azure_blob]   (also accepted: azure_blob)
        disk             → [local, disk]
        anything else (valkey-semantic, ...) → [local], with a warning.
    Each type's own keys: see `tiers` (exact types) and `semantic` (semantic types).
    Common: namespace → cache.namespace; ttl → cache.ttl_s (for local,
    default_in_memory_ttl wins, for redis types default_in_redis_ttl wins, as in
    LiteLLM); no ttl → llmcache's default ttl_s (LiteLLM's backend defaults differ per
    type). mode → cache.mode. supported_call_types → cache.call_types: completion /
    acompletion → chat_completions, text_completion / atext_completion → completions,
    embedding / aembedding → embeddings, transcription / atranscription →
    transcriptions, responses, messages, images, speech, rerank, moderations; others are
    not cached by llmcache (warned).
    Every other key is named in a warning, saying which cache type it belongs to.

litellm_settings.caching_groups and router_settings.caching_groups → cache.caching_groups
    Each group is a list of model names; a model listed in two groups stays in the first.
"""

from __future__ import annotations

import re
from typing import Any

from app.config import kind_of
from app.litellm_import.base import mapping
from app.litellm_import.result import LiteLLMImportError
from app.litellm_import.semantic import SemanticMixin
from app.litellm_import.tiers import TiersMixin
from app.litellm_import.vocabulary import (
    CALL_TYPES,
    CP,
    KNOWN_TYPES,
    LITELLM_CACHE_KEYS,
    OUR_CALL_TYPE_ORDER,
    REDIS_PARAMS,
    REDIS_TYPES,
)
from app.types import valid_namespace


class CacheMixin(TiersMixin, SemanticMixin):
    def cache(self, litellm_settings: dict[str, Any], router_settings: dict[str, Any]) -> dict[str, Any]:
        cache: dict[str, Any] = {}
        enabled = litellm_settings.get("cache")
        raw = litellm_settings.get("cache_params")
        params = mapping(raw, CP)
        if enabled is not True:
            state = "missing" if "cache" not in litellm_settings else f"{enabled!r}"
            self.warn(
                f"litellm_settings.cache: {state}, so LiteLLM did not cache; emitted mode: default_off "
                "(only requests sending use-cache are cached) -- set mode: default_on to cache everything"
            )
            cache["mode"] = "default_off"
        if enabled is True or params:
            self.cache_params(
                {k: self.secret(v, f"{CP}.{k}") for k, v in params.items()},
                cache,
                from_env=enabled is True and raw is None,
            )
        # LiteLLM reads caching groups in either place; both map to ours, in that order.
        groups = self.caching_groups(
            [
                *self.group_list(litellm_settings, "litellm_settings"),
                *self.group_list(router_settings, "router_settings"),
            ]
        )
        if groups:
            cache["caching_groups"] = groups
        return _ordered(cache, ("mode", "ttl_s", "namespace", "call_types", "caching_groups", "tiers", "semantic"))

    def cache_params(self, params: dict[str, Any], cache: dict[str, Any], *, from_env: bool) -> None:
        used: set[str] = {"type"}
        kind = params.get("type") or "redis"  # LiteLLM's proxy defaults to redis, not local
        if not isinstance(kind, str):
            raise LiteLLMImportError(f"{CP}.type must be a string, not {kind_of(kind)}")
        kind = kind.strip().lower()
        if kind == "azure_blob":
            kind = "azure-blob"
        if "type" not in params:
            self.warn(f"{CP}.type: not set, LiteLLM's proxy then uses redis; converted as redis")

        self.common_params(params, used, cache, kind)
        tiers, semantic = self.storage(kind, params, used, from_env=from_env)
        cache["tiers"] = tiers
        if semantic is not None:
            cache["semantic"] = semantic

        for key in params:
            if key in used:
                continue
            if key in LITELLM_CACHE_KEYS:
                self.warn(f"{CP}.{key}: {_why_cache_key(key, kind)}")
            else:
                self.warn(f"{CP}.{key}: unknown cache_params key; not mapped")

    def common_params(self, params: dict[str, Any], used: set[str], cache: dict[str, Any], kind: str) -> None:
        """The keys every cache type takes: mode, namespace, ttl, call types, scope."""
        mode = params.get("mode")
        used.add("mode")
        if mode is not None:
            mode = getattr(mode, "value", mode)
            if mode in ("default_on", "default_off"):
                if "mode" not in cache:  # cache off in LiteLLM keeps default_off
                    cache["mode"] = mode
            else:
                self.warn(f"{CP}.mode: {mode!r} is not default_on or default_off; not mapped")
        if params.get("namespace") is not None:
            used.add("namespace")
            cache["namespace"] = self.namespace(params["namespace"])
            if cache["namespace"] is None:
                del cache["namespace"]
        ttl_key = "ttl"
        if kind == "local" and params.get("default_in_memory_ttl") is not None:
            ttl_key = "default_in_memory_ttl"
        if kind in REDIS_TYPES and params.get("default_in_redis_ttl") is not None:
            ttl_key = "default_in_redis_ttl"
        used.add(ttl_key)
        if params.get(ttl_key) is not None:
            ttl = self.number(params[ttl_key], f"{CP}.{ttl_key}")
            if ttl is not None:
                cache["ttl_s"] = ttl
            if ttl_key != "ttl" and params.get("ttl") is not None:
                used.add("ttl")
                self.warn(f"{CP}.ttl: overridden by {ttl_key} (as in LiteLLM); ttl_s = {params[ttl_key]}")
        if "supported_call_types" in params:
            used.add("supported_call_types")
            cache["call_types"] = self.call_types(params["supported_call_types"])
        if "semantic_cache_scope" in params:
            used.add("semantic_cache_scope")
            if params["semantic_cache_scope"] != "key":
                self.warn(
                    f"{CP}.semantic_cache_scope: {params['semantic_cache_scope']!r} not mapped (llmcache "
                    "scopes entries by the caller's credential, like LiteLLM's 'key')"
                )

    def storage(
        self, kind: str, params: dict[str, Any], used: set[str], *, from_env: bool
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The cache type → (cache.tiers, cache.semantic or None)."""
        tiers: list[dict[str, Any]] = [{"type": "local"}]
        semantic: dict[str, Any] | None = None
        if kind == "local":
            pass
        elif kind == "redis":
            tiers.append(self.redis_tier(params, used, from_env=from_env))
        elif kind == "redis-semantic":
            redis = self.redis_tier(params, used, from_env=from_env)
            tiers.append(redis)
            semantic = self.redis_semantic(params, used, redis)
        elif kind == "qdrant-semantic":
            semantic = self.qdrant_semantic(params, used)
        elif kind == "s3":
            tiers.append(self.s3_tier(params, used))
        elif kind == "gcs":
            tiers.append(self.gcs_tier(params, used))
        elif kind == "azure-blob":
            tiers.append(self.azure_blob_tier(params, used))
        elif kind == "disk":
            tiers.append(self.disk_tier(params, used))
        else:
            self.warn(
                f"{CP}.type: {kind!r} has no llmcache equivalent; only the in-process tier is emitted "
                "(tier types: local, disk, redis, s3, gcs, azure_blob; semantic: redis, qdrant)"
            )
        return tiers, semantic

    def namespace(self, value: Any) -> str | None:
        where = f"{CP}.namespace"
        if isinstance(value, str) and value.startswith("${"):
            return value
        text = str(value)
        if valid_namespace(text):
            return text
        cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:128]
        if cleaned and valid_namespace(cleaned):
            self.warn(f"{where}: {text!r} has characters llmcache does not allow; became {cleaned!r}")
            return cleaned
        self.warn(f"{where}: {text!r} cannot be an llmcache namespace; not mapped")
        return None

    def call_types(self, value: Any) -> list[str]:
        where = f"{CP}.supported_call_types"
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise LiteLLMImportError(f"{where} must be a list, not {kind_of(value)}")
        ours: set[str] = set()
        dropped: list[str] = []
        for item in value:
            name = getattr(item, "value", item)
            if name in CALL_TYPES:
                ours.add(CALL_TYPES[name])
            else:
                dropped.append(str(name))
        if dropped:
            self.warn(
                f"{where}: {', '.join(dropped)} not mapped (llmcache caches "
                f"{', '.join(OUR_CALL_TYPE_ORDER)}; other routes are forwarded uncached)"
            )
        if not ours:
            self.warn(f"{where}: nothing llmcache caches is listed; call_types is empty, so nothing is cached")
        return [t for t in OUR_CALL_TYPE_ORDER if t in ours]

    @staticmethod
    def group_list(section: dict[str, Any], name: str) -> list[tuple[str, Any]]:
        """(where, group) for each caching group listed in `section`."""
        value = section.get("caching_groups")
        if value is None:
            return []
        where = f"{name}.caching_groups"
        if not isinstance(value, list):
            raise LiteLLMImportError(f"{where} must be a list of model-name lists, not {kind_of(value)}")
        return [(f"{where}[{i}]", group) for i, group in enumerate(value)]

    def caching_groups(self, listed: list[tuple[str, Any]]) -> list[list[str]]:
        seen: dict[str, int] = {}
        groups: list[list[str]] = []
        for where, group in listed:
            if isinstance(group, str):
                group = [group]
            if not isinstance(group, (list, tuple)) or not all(isinstance(m, str) for m in group):
                raise LiteLLMImportError(f"{where} must be a list of model names")
            members: list[str] = []
            for model in group:
                if model in seen:
                    self.warn(
                        f"{where}: {model!r} is already in group {seen[model]}; kept there only "
                        "(llmcache groups must not overlap)"
                    )
                elif model not in members:
                    members.append(model)
            if not members:
                self.warn(f"{where}: empty group dropped")
                continue
            for model in members:
                seen[model] = len(groups)
            groups.append(members)
        return groups


def _ordered(data: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    return {k: data[k] for k in order if k in data} | {k: v for k, v in data.items() if k not in order}


def _why_cache_key(key: str, kind: str) -> str:
    """Why a known cache_params key was not mapped for this cache type."""
    if kind not in KNOWN_TYPES:
        return f"not mapped (cache type {kind!r} has no llmcache equivalent)"
    if (key in REDIS_PARAMS or key == "redis_flush_size") and kind not in REDIS_TYPES:
        return f"Redis setting, not used by type {kind!r} (LiteLLM ignores it too)"
    if key == "redis_flush_size":
        return "not mapped (llmcache writes to Redis through its own bounded write queue)"
    if key in ("default_in_memory_ttl", "default_in_redis_ttl"):
        return f"not mapped (applies to another cache type than {kind!r}; llmcache has one ttl_s for all tiers)"
    if key in ("gcp_service_account", "gcp_ssl_ca_certs"):
        return "not mapped (llmcache has no GCP IAM auth for Redis; use a password or url)"
    if key == "qdrant_quantization_config":
        return "not mapped (llmcache creates its Qdrant collection unquantized, cosine distance)"
    if key == "qdrant_semantic_cache_vector_size":
        return "not mapped (llmcache sizes its collection from the embedding model's output)"
    if key == "semantic_cache_embedding_max_input_tokens":
        return "not mapped (llmcache embeds the final user message as sent)"
    if key in ("s3_api_version", "s3_use_ssl", "s3_verify", "s3_aws_session_token", "s3_config"):
        return (
            "not mapped (llmcache's s3 tier takes bucket, region, endpoint_url, access_key_id, "
            "secret_access_key and path; use the standard AWS credential chain for the rest)"
        )
    if key.startswith("valkey_"):
        return "not mapped (valkey-semantic has no llmcache equivalent)"
    if key == "similarity_threshold":
        return f"only used by semantic cache types, not by {kind!r} (LiteLLM ignores it too)"
    return f"not used by type {kind!r} (LiteLLM ignores it too)"
