"""`llmcache import-litellm`: turn a LiteLLM proxy config into an llmcache config.

The input is a LiteLLM proxy `config.yaml` (`model_list`, `litellm_settings`,
`router_settings`, `general_settings`, ...). The output is our config (CONTRACT §2, §6)
as plain data, plus one warning line for everything that could not be carried over.
Nothing is dropped silently: every key that is not mapped is named in a warning.
Spellings follow LiteLLM's own source (`litellm/caching/caching.py` `Cache.__init__`,
`litellm/types/caching.py`, `litellm/proxy/proxy_server.py`).

Secrets
    LiteLLM's `os.environ/VAR` becomes our `${VAR}` (expanded when llmcache starts; an
    unset VAR is then a startup error naming it). `environment_variables:` is not
    copied: export those variables where llmcache runs.

model_list → models
    One route per `model_name`: `name` = model_name, `base_url` = litellm_params.api_base,
    `api_key` = litellm_params.api_key, `upstream_model` = litellm_params.model with its
    provider prefix removed (`openai/gpt-4o` → `gpt-4o`; omitted when equal to the name).
    Providers that speak the OpenAI API (`openai`, `text-completion-openai`,
    `custom_openai`, `groq`, `together_ai`, `hosted_vllm`, `mistral`, `deepseek`,
    `openrouter`, ... see OPENAI_COMPATIBLE) are forwarded directly; when api_base is
    absent, LiteLLM's default endpoint for that provider becomes `base_url`. `ollama/`
    and `ollama_chat/` go to Ollama's OpenAI-compatible `/v1` endpoint.
    Providers with their own wire format (`anthropic/`, `bedrock/`, `vertex_ai/`,
    `azure/`, `gemini/`, `cohere/`, ...) cannot be forwarded by an OpenAI-compatible
    proxy: the route is kept with its name only (no base_url, api_key or upstream_model),
    so requests for it go unchanged to `upstream.base_url` -- which works when that is
    an OpenAI-compatible gateway serving this model name (e.g. LiteLLM itself, kept
    behind llmcache) -- and a warning says so. Several deployments of one model_name
    (load balancing): the first is kept, the others are named in a warning.
    `model_name: "*"` (LiteLLM's catch-all) becomes `upstream.base_url`/`api_key`;
    other wildcard names cannot be expressed and are warned about.
    Other litellm_params (rpm, tpm, timeout, max_retries, api_version, ...) and
    model_info: warned about, per deployment.

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
    redis: host, port, password, username, db, ssl, url → the redis tier;
    redis_startup_nodes → startup_nodes (Redis Cluster); max_connections;
    socket_timeout → timeout_s. With no host/url/startup_nodes at all, LiteLLM read the
    address from its environment: the tier gets `host: ${REDIS_HOST}`,
    `port: ${REDIS_PORT}` and a warning (REDIS_PASSWORD / REDIS_URL must be added by hand).
    redis-semantic: the redis tier as above, plus semantic {type: redis,
    similarity_threshold, embedding: {model: redis_semantic_cache_embedding_model
    (LiteLLM's default text-embedding-ada-002)}, redis: {url}} with the url built from
    host/port/password/ssl (or url / redis_url).
    qdrant-semantic: semantic {type: qdrant, similarity_threshold, embedding: {model:
    qdrant_semantic_cache_embedding_model}, qdrant: {url: qdrant_api_base (else
    ${QDRANT_URL}, as LiteLLM read QDRANT_URL), api_key: qdrant_api_key}}.
    The semantic index / collection is NOT reused: redis_semantic_cache_index_name and
    qdrant_collection_name hold LiteLLM's entries in LiteLLM's schema, which llmcache
    can neither read nor share; llmcache keeps its own (`llmcache-semantic`,
    `llmcache`) and a warning names the key.
    semantic_cache_embedding_timeout → embedding.timeout_s. The embedding model name is
    kept as is when it is a model_list name (llmcache routes it), else its OpenAI
    provider prefix is removed.
    s3: s3_bucket_name → bucket, s3_region_name → region, s3_endpoint_url →
    endpoint_url, s3_aws_access_key_id → access_key_id, s3_aws_secret_access_key →
    secret_access_key, s3_path → path. gcs: gcs_bucket_name → bucket (else
    ${GCS_BUCKET_NAME}, LiteLLM's fallback), gcs_path_service_account →
    service_account_json, gcs_path → path. azure-blob: azure_account_url →
    account_url, azure_blob_container → container. disk: disk_cache_dir → path.
    Common: namespace → cache.namespace; ttl → cache.ttl_s (for local,
    default_in_memory_ttl wins, for redis types default_in_redis_ttl wins, as in
    LiteLLM); no ttl → llmcache's default ttl_s (LiteLLM's backend defaults differ per
    type). mode → cache.mode. supported_call_types → cache.call_types: completion /
    acompletion → chat_completions, text_completion / atext_completion → completions,
    embedding / aembedding → embeddings, transcription / atranscription →
    transcriptions; others (rerank, responses, ...) are not cached by llmcache (warned).

router_settings.caching_groups → cache.caching_groups
    Each group is a list of model names; a model listed in two groups stays in the first.

litellm_settings.request_timeout → upstream.timeout_s.

Everything else (general_settings.master_key, callbacks, router strategy, guardrails,
...) is named in a warning. The conversion never reads the environment; the result is
meant to pass `llmcache check-config` once the `${VAR}`s it references are set.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from app.config import kind_of, read_yaml_mapping

__all__ = ["Conversion", "LiteLLMImportError", "convert", "convert_file", "render"]


class LiteLLMImportError(ValueError):
    """The input is not a usable LiteLLM proxy config; the message says where."""


@dataclass
class Conversion:
    config: dict[str, Any]  # our config as plain data (yaml.safe_dump-able, key order kept)
    warnings: list[str] = field(default_factory=list)  # one line each: what was not mapped, and why
    source: str | None = None  # the file converted, for the header comment


# --- LiteLLM vocabulary ----------------------------------------------------------------

# Providers whose API is OpenAI's, and LiteLLM's default endpoint for each (None: the
# deployment must give api_base; `openai` & co. fall back to upstream.base_url).
# From litellm/constants.py `openai_compatible_providers` and
# litellm/litellm_core_utils/get_llm_provider_logic.py.
OPENAI_COMPATIBLE: dict[str, str | None] = {
    "openai": None,
    "text-completion-openai": None,
    "custom_openai": None,
    "aiohttp_openai": None,
    "litellm_proxy": None,
    "hosted_vllm": None,
    "lm_studio": None,
    "llamafile": None,
    "xinference": None,
    "azure_ai": None,
    "groq": "https://api.groq.com/openai/v1",
    "anyscale": "https://api.endpoints.anyscale.com/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "empower": "https://app.empower.dev/api/v1",
    "nvidia_nim": "https://integrate.api.nvidia.com/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "sambanova": "https://api.sambanova.ai/v1",
    "meta_llama": "https://api.llama.com/compat/v1",
    "ai21_chat": "https://api.ai21.com/studio/v1",
    "volcengine": "https://ark.cn-beijing.volces.com/api/v3",
    "codestral": "https://codestral.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/beta",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "github": "https://models.inference.ai.azure.com",
    "mistral": "https://api.mistral.ai/v1",
    "xai": "https://api.x.ai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "friendliai": "https://api.friendli.ai/serverless/v1",
    "galadriel": "https://api.galadriel.com/v1",
    "perplexity": "https://api.perplexity.ai",
    "openrouter": "https://openrouter.ai/api/v1",
}
OLLAMA = {"ollama", "ollama_chat"}
OLLAMA_DEFAULT_BASE = "http://localhost:11434"
# Bare model names LiteLLM resolves to a non-OpenAI provider (its model map knows more).
BARE_NON_OPENAI = (("claude", "anthropic"), ("gemini", "gemini"), ("command", "cohere"))

CALL_TYPES = {
    "completion": "chat_completions",
    "acompletion": "chat_completions",
    "text_completion": "completions",
    "atext_completion": "completions",
    "embedding": "embeddings",
    "aembedding": "embeddings",
    "transcription": "transcriptions",
    "atranscription": "transcriptions",
}
OUR_CALL_TYPE_ORDER = ("chat_completions", "completions", "embeddings", "transcriptions")

# Every keyword of LiteLLM's Cache.__init__ (plus the Redis client kwargs we map), so that
# a key meant for another cache type is told apart from an unknown key.
LITELLM_CACHE_KEYS = {
    "type", "mode", "host", "port", "password", "namespace", "ttl", "default_in_memory_ttl",
    "default_in_redis_ttl", "similarity_threshold", "supported_call_types",
    "azure_account_url", "azure_blob_container",
    "s3_bucket_name", "s3_region_name", "s3_api_version", "s3_use_ssl", "s3_verify",
    "s3_endpoint_url", "s3_aws_access_key_id", "s3_aws_secret_access_key",
    "s3_aws_session_token", "s3_config", "s3_path",
    "gcs_bucket_name", "gcs_path_service_account", "gcs_path",
    "redis_semantic_cache_embedding_model", "redis_semantic_cache_index_name",
    "valkey_semantic_cache_embedding_model", "valkey_semantic_cache_index_name",
    "redis_flush_size", "redis_startup_nodes", "disk_cache_dir",
    "qdrant_api_base", "qdrant_api_key", "qdrant_collection_name", "qdrant_quantization_config",
    "qdrant_semantic_cache_embedding_model", "qdrant_semantic_cache_vector_size",
    "semantic_cache_embedding_max_input_tokens", "semantic_cache_embedding_timeout",
    "semantic_cache_scope", "gcp_service_account", "gcp_ssl_ca_certs",
    # redis.Redis kwargs LiteLLM passes through
    "url", "redis_url", "username", "db", "ssl", "max_connections", "socket_timeout",
}
REDIS_TYPES = {"redis", "redis-semantic"}
KNOWN_TYPES = {"local", "redis", "redis-semantic", "qdrant-semantic", "s3", "gcs", "azure-blob", "disk"}
LITELLM_EMBEDDING_DEFAULT = "text-embedding-ada-002"

NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_PREFIX = "os.environ/"
CP = "litellm_settings.cache_params"


# --- entry points -----------------------------------------------------------------------

def convert(litellm: dict[str, Any]) -> Conversion:
    """Convert a parsed LiteLLM proxy config; raise LiteLLMImportError if it is malformed."""
    if not isinstance(litellm, dict):
        raise LiteLLMImportError(
            f"a LiteLLM proxy config must be a mapping at the top level, not {kind_of(litellm)}")
    return _Converter().run(litellm)


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
    body = yaml.safe_dump(conversion.config, sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + body


# --- the conversion ---------------------------------------------------------------------

class _Converter:
    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.model_names: set[str] = set()
        self.fixed_keys = False  # some route carries its own upstream api_key

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # values

    def secret(self, value: Any, where: str) -> Any:
        """`os.environ/VAR` → `${VAR}`, through lists and mappings."""
        if isinstance(value, str) and value.startswith(ENV_PREFIX):
            name = value[len(ENV_PREFIX):]
            if ENV_NAME.match(name):
                return "${" + name + "}"
            self.warn(f"{where}: {value!r} is not a plain environment variable name; kept as a literal")
            return value
        if isinstance(value, str) and "${" in value:
            self.warn(f"{where}: the literal {value!r} contains ${{...}}, which llmcache expands from its "
                      "environment at startup")
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

    # top level

    def run(self, data: dict[str, Any]) -> Conversion:
        config: dict[str, Any] = {}
        upstream: dict[str, Any] = {}
        litellm_settings = _mapping(data.get("litellm_settings"), "litellm_settings")
        router_settings = _mapping(data.get("router_settings"), "router_settings")
        general_settings = _mapping(data.get("general_settings"), "general_settings")

        models = self.models(data.get("model_list"), upstream)
        cache = self.cache(litellm_settings, router_settings)

        for key, value in litellm_settings.items():
            if key in ("cache", "cache_params"):
                continue
            if key == "request_timeout":
                timeout = self.number(self.secret(value, f"litellm_settings.{key}"), f"litellm_settings.{key}")
                if timeout is not None:
                    upstream["timeout_s"] = timeout
                continue
            self.warn(f"litellm_settings.{key}: not mapped ({_why_litellm_setting(key)})")
        for key in router_settings:
            if key != "caching_groups":
                self.warn(f"router_settings.{key}: not mapped (llmcache does no load balancing, "
                          "retries or fallbacks; one upstream per model name)")
        for key in general_settings:
            why = _why_general_setting(key)
            if key == "master_key" and self.fixed_keys:
                why += "; the models' api_keys are then spent for anyone who reaches llmcache: keep it private"
            self.warn(f"general_settings.{key}: not mapped ({why})")
        if "environment_variables" in data:
            names = ", ".join(str(k) for k in _mapping(data["environment_variables"], "environment_variables"))
            self.warn(f"environment_variables: not copied (export {names or 'them'} where llmcache runs; "
                      "${VAR} references are read from llmcache's own environment)")
        for key in data:
            if key not in ("model_list", "litellm_settings", "router_settings", "general_settings",
                           "environment_variables"):
                self.warn(f"{key}: not mapped (no llmcache equivalent)")

        if upstream:
            config["upstream"] = upstream
        if models:
            config["models"] = models
        config["cache"] = cache
        return Conversion(config=config, warnings=self.warnings)

    # model_list

    def models(self, model_list: Any, upstream: dict[str, Any]) -> list[dict[str, Any]]:
        if model_list is None:
            return []
        if not isinstance(model_list, list):
            raise LiteLLMImportError(f"model_list must be a list of deployments, not {kind_of(model_list)}")
        routes: dict[str, dict[str, Any]] = {}
        seen: dict[str, int] = {}
        keyless: list[str] = []
        keyed = False
        for index, deployment in enumerate(model_list):
            where = f"model_list[{index}]"
            if not isinstance(deployment, dict):
                raise LiteLLMImportError(f"{where} must be a mapping, not {kind_of(deployment)}")
            name = deployment.get("model_name")
            if not isinstance(name, str) or not name:
                raise LiteLLMImportError(f"{where}.model_name is missing or not a string")
            where = f"model_list[{index}] ({name})"
            params = _mapping(deployment.get("litellm_params"), f"{where}.litellm_params")
            for key in deployment:
                if key not in ("model_name", "litellm_params"):
                    self.warn(f"{where}.{key}: not mapped (llmcache keeps no model metadata)")
            if name in seen:
                self.warn(f"{where}: another deployment of {name!r} (load balancing); llmcache sends each "
                          f"model name to one upstream: kept model_list[{seen[name]}], dropped this one")
                continue
            seen[name] = index
            route = self.route(name, params, where)
            if route is None:
                continue
            forwarded = route.pop("_forwarded", False)
            if route.get("api_key") is not None:
                keyed = True
            if name == "*":  # LiteLLM's catch-all: our default upstream
                for key in ("base_url", "api_key"):
                    if route.get(key) is not None:
                        upstream[key] = route[key]
                continue
            routes[name] = route
            self.model_names.add(name)
            if forwarded and route.get("api_key") is None and params.get("api_base") is None:
                keyless.append(name)  # a public provider endpoint, which needs the provider's key
        if keyless and "api_key" in upstream:
            self.warn("models " + ", ".join(keyless) + ": no api_key, so llmcache sends upstream.api_key (from "
                      "the '*' deployment) to their provider; give each its own `api_key: ${...}`")
        elif keyless:
            self.warn("models " + ", ".join(keyless) + ": no api_key, so llmcache forwards each caller's own "
                      "Authorization header to the provider, where LiteLLM used its provider key from the "
                      "environment (e.g. OPENAI_API_KEY); add `api_key: ${OPENAI_API_KEY}` (or the provider's) "
                      "if callers do not hold provider keys")
        self.fixed_keys = keyed
        return list(routes.values())

    def route(self, name: str, params: dict[str, Any], where: str) -> dict[str, Any] | None:
        model = params.get("model")
        if not isinstance(model, str) or not model:
            raise LiteLLMImportError(f"{where}.litellm_params.model is missing or not a string")
        api_base = self.secret(params.get("api_base"), f"{where}.litellm_params.api_base")
        api_key = self.secret(params.get("api_key"), f"{where}.litellm_params.api_key")
        for key, value in (("api_base", api_base), ("api_key", api_key)):
            if value is not None and not isinstance(value, str):
                raise LiteLLMImportError(f"{where}.litellm_params.{key} must be a string, not {kind_of(value)}")
        extra = [k for k in params if k not in ("model", "api_base", "api_key", "custom_llm_provider")]
        if extra:
            self.warn(f"{where}: litellm_params {', '.join(extra)} not mapped (llmcache forwards requests "
                      "as sent: no rate limits, retries, timeouts or extra params per model)")

        provider, upstream_model = _split_provider(model, params.get("custom_llm_provider"))
        if "*" in name and name != "*":
            self.warn(f"{where}: wildcard model_name {name!r} cannot be expressed (llmcache routes exact "
                      "names); requests for such models go to upstream.base_url unchanged")
            return None
        if provider in OLLAMA:
            base = (api_base or OLLAMA_DEFAULT_BASE).rstrip("/")
            self.warn(f"{where}: {provider}/ is served through Ollama's OpenAI-compatible endpoint {base}/v1")
            return self._route(name, base + "/v1", api_key, upstream_model, forwarded=False)
        if provider not in OPENAI_COMPATIBLE:
            self.warn(f"{where}: provider {provider!r} ({model}) does not speak the OpenAI API and llmcache "
                      "cannot translate; route kept by name only, so its requests go unchanged to "
                      "upstream.base_url (point that at an OpenAI-compatible gateway serving "
                      f"{name!r}, e.g. LiteLLM itself)")
            if name == "*":
                return None
            return {"name": name}
        base_url = api_base or OPENAI_COMPATIBLE[provider]
        if api_base is None and provider not in ("openai", "text-completion-openai") and base_url is None:
            self.warn(f"{where}: provider {provider!r} has no api_base; requests go to upstream.base_url")
        if upstream_model == "*":
            upstream_model = None
        return self._route(name, base_url, api_key, upstream_model, forwarded=True)

    @staticmethod
    def _route(name: str, base_url: str | None, api_key: str | None, upstream_model: str | None,
               *, forwarded: bool) -> dict[str, Any]:
        route: dict[str, Any] = {"name": name}
        if base_url is not None:
            route["base_url"] = base_url
        if api_key is not None:
            route["api_key"] = api_key
        if upstream_model is not None and upstream_model != name:
            route["upstream_model"] = upstream_model
        route["_forwarded"] = forwarded
        return route

    # cache

    def cache(self, litellm_settings: dict[str, Any], router_settings: dict[str, Any]) -> dict[str, Any]:
        cache: dict[str, Any] = {}
        enabled = litellm_settings.get("cache")
        raw = litellm_settings.get("cache_params")
        params = _mapping(raw, CP)
        if enabled is not True:
            state = "missing" if "cache" not in litellm_settings else f"{enabled!r}"
            self.warn(f"litellm_settings.cache: {state}, so LiteLLM did not cache; emitted mode: default_off "
                      "(only requests sending use-cache are cached) -- set mode: default_on to cache everything")
            cache["mode"] = "default_off"
        if enabled is True or params:
            self.cache_params({k: self.secret(v, f"{CP}.{k}") for k, v in params.items()}, cache,
                              from_env=enabled is True and raw is None)
        groups = self.caching_groups(router_settings.get("caching_groups"))
        if groups:
            cache["caching_groups"] = groups
        return _ordered(cache, ("mode", "ttl_s", "namespace", "call_types", "caching_groups", "tiers",
                                "semantic"))

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

        # common keys
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
                self.warn(f"{CP}.semantic_cache_scope: {params['semantic_cache_scope']!r} not mapped (llmcache "
                          "scopes entries by the caller's credential, like LiteLLM's 'key')")

        tiers: list[dict[str, Any]] = [{"type": "local"}]
        semantic: dict[str, Any] | None = None
        if kind == "local":
            pass
        elif kind == "redis":
            tiers.append(self.redis_tier(params, used, from_env=from_env))
        elif kind == "redis-semantic":
            tier = self.redis_tier(params, used, from_env=from_env)
            tiers.append(tier)
            semantic = self.semantic(params, used, "redis")
            semantic["redis"] = {"url": self.redis_url(params, tier)}
            if params.get("redis_semantic_cache_index_name") is not None:
                used.add("redis_semantic_cache_index_name")
                self.warn(f"{CP}.redis_semantic_cache_index_name: {params['redis_semantic_cache_index_name']!r} "
                          "not reused (it holds LiteLLM's entries in LiteLLM's schema, which llmcache cannot "
                          "read); llmcache keeps its own index 'llmcache-semantic' (cache.semantic.redis.index)")
        elif kind == "qdrant-semantic":
            semantic = self.semantic(params, used, "qdrant")
            used.update({"qdrant_api_base", "qdrant_api_key", "qdrant_collection_name"})
            url = params.get("qdrant_api_base")
            if url is None:
                url = "${QDRANT_URL}"
                self.warn(f"{CP}.qdrant_api_base: not set, LiteLLM read QDRANT_URL (or QDRANT_API_BASE) from "
                          "its environment; emitted url: ${QDRANT_URL}")
            qdrant: dict[str, Any] = {"url": url}
            if params.get("qdrant_api_key") is not None:
                qdrant["api_key"] = params["qdrant_api_key"]
            semantic["qdrant"] = qdrant
            if params.get("qdrant_collection_name") is not None:
                self.warn(f"{CP}.qdrant_collection_name: {params['qdrant_collection_name']!r} not reused (it "
                          "holds LiteLLM's points, which llmcache cannot read); llmcache keeps its own "
                          "collection 'llmcache' (cache.semantic.qdrant.collection)")
        elif kind == "s3":
            tiers.append(self.object_tier("s3", params, used, {
                "s3_bucket_name": "bucket", "s3_region_name": "region", "s3_endpoint_url": "endpoint_url",
                "s3_aws_access_key_id": "access_key_id", "s3_aws_secret_access_key": "secret_access_key",
                "s3_path": "path"}, required={"s3_bucket_name"}))
        elif kind == "gcs":
            if params.get("gcs_bucket_name") is None:
                params = {**params, "gcs_bucket_name": "${GCS_BUCKET_NAME}"}
                self.warn(f"{CP}.gcs_bucket_name: not set, LiteLLM read GCS_BUCKET_NAME from its environment; "
                          "emitted bucket: ${GCS_BUCKET_NAME}")
            tiers.append(self.object_tier("gcs", params, used, {
                "gcs_bucket_name": "bucket", "gcs_path_service_account": "service_account_json",
                "gcs_path": "path"}, required=set()))
        elif kind == "azure-blob":
            tiers.append(self.object_tier("azure_blob", params, used, {
                "azure_account_url": "account_url", "azure_blob_container": "container"},
                required={"azure_account_url", "azure_blob_container"}))
        elif kind == "disk":
            used.add("disk_cache_dir")
            tier: dict[str, Any] = {"type": "disk"}
            if params.get("disk_cache_dir") is not None:
                tier["path"] = str(params["disk_cache_dir"])
            tiers.append(tier)
        else:
            self.warn(f"{CP}.type: {kind!r} has no llmcache equivalent; only the in-process tier is emitted "
                      "(tier types: local, disk, redis, s3, gcs, azure_blob; semantic: redis, qdrant)")

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

    def namespace(self, value: Any) -> str | None:
        where = f"{CP}.namespace"
        if isinstance(value, str) and value.startswith("${"):
            return value
        text = str(value)
        if NAMESPACE.match(text):
            return text
        cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:128]
        if cleaned and NAMESPACE.match(cleaned):
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
            self.warn(f"{where}: {', '.join(dropped)} not mapped (llmcache caches chat completions, "
                      "completions, embeddings and transcriptions; other routes are forwarded uncached)")
        if not ours:
            self.warn(f"{where}: nothing llmcache caches is listed; call_types is empty, so nothing is cached")
        return [t for t in OUR_CALL_TYPE_ORDER if t in ours]

    def redis_tier(self, params: dict[str, Any], used: set[str], *, from_env: bool) -> dict[str, Any]:
        used.update({"host", "port", "password", "username", "db", "ssl", "url", "redis_url",
                     "redis_startup_nodes", "max_connections", "socket_timeout"})
        tier: dict[str, Any] = {"type": "redis"}
        url = params.get("url") or params.get("redis_url")
        nodes = params.get("redis_startup_nodes")
        if url is not None:
            tier["url"] = str(url)
        elif nodes:
            tier["startup_nodes"] = self.startup_nodes(nodes)
        elif params.get("host") is not None:
            tier["host"] = str(params["host"])
        else:
            tier["host"] = "${REDIS_HOST}"
            tier["port"] = "${REDIS_PORT}"
            origin = "`cache: true` without cache_params" if from_env else f"{CP} without host/url"
            self.warn(f"{origin}: LiteLLM read the Redis address from its environment (REDIS_HOST, REDIS_PORT, "
                      "REDIS_PASSWORD or REDIS_URL); emitted host: ${REDIS_HOST}, port: ${REDIS_PORT} -- add "
                      "password: ${REDIS_PASSWORD}, or use url: ${REDIS_URL}, if that is what was set")
        if url is None and not nodes and params.get("port") is not None:
            port = self.number(params["port"], f"{CP}.port", integer=True)
            if port is not None:
                tier["port"] = port
        if url is not None:
            for key in ("host", "port", "db"):
                if params.get(key) is not None:
                    self.warn(f"{CP}.{key}: ignored because url is set (as in LiteLLM)")
        elif nodes and any(params.get(k) is not None for k in ("host", "port")):
            self.warn(f"{CP}.host/port: ignored because redis_startup_nodes is set (Redis Cluster)")
        if params.get("username") is not None:
            tier["username"] = str(params["username"])
        if params.get("password") is not None:
            tier["password"] = str(params["password"])
        elif url is None and tier.get("host") != "${REDIS_HOST}":
            self.warn(f"{CP}.password: not set; LiteLLM would have used REDIS_PASSWORD from its environment "
                      "if set -- add password: ${REDIS_PASSWORD} to the redis tier if it was")
        if params.get("db") is not None and url is None:
            db = self.number(params["db"], f"{CP}.db", integer=True, positive=False)
            if db is not None:
                tier["db"] = db
        if params.get("ssl") is not None:
            ssl = self.boolean(params["ssl"], f"{CP}.ssl")
            if ssl is not None:
                tier["ssl"] = ssl
        if params.get("max_connections") is not None:
            value = self.number(params["max_connections"], f"{CP}.max_connections", integer=True)
            if value is not None:
                tier["max_connections"] = value
        if params.get("socket_timeout") is not None:
            value = self.number(params["socket_timeout"], f"{CP}.socket_timeout")
            if value is not None:
                tier["timeout_s"] = value
        return tier

    def startup_nodes(self, nodes: Any) -> list[dict[str, Any]]:
        where = f"{CP}.redis_startup_nodes"
        if isinstance(nodes, str) and nodes.startswith("${"):
            raise LiteLLMImportError(f"{where}: a whole node list from the environment cannot be converted; "
                                     "list the nodes as [{host, port}, ...]")
        if not isinstance(nodes, list):
            raise LiteLLMImportError(f"{where} must be a list of {{host, port}}, not {kind_of(nodes)}")
        result = []
        for i, node in enumerate(nodes):
            if not isinstance(node, dict) or node.get("host") is None:
                raise LiteLLMImportError(f"{where}[{i}] must be a mapping with host (and port)")
            entry: dict[str, Any] = {"host": str(node["host"])}
            if node.get("port") is not None:
                port = self.number(node["port"], f"{where}[{i}].port", integer=True)
                if port is not None:
                    entry["port"] = port
            for key in node:
                if key not in ("host", "port"):
                    self.warn(f"{where}[{i}].{key}: not mapped")
            result.append(entry)
        return result

    def redis_url(self, params: dict[str, Any], tier: dict[str, Any]) -> str:
        """The semantic index's Redis: the same server as the exact redis tier."""
        if "url" in tier:
            return tier["url"]
        if "startup_nodes" in tier:
            node = tier["startup_nodes"][0]
            self.warn(f"{CP}.redis_startup_nodes: the semantic index needs one RediSearch server, not a "
                      f"cluster; emitted redis://{node['host']}:{node.get('port', 6379)} -- check it")
            host, port = node["host"], node.get("port", 6379)
        else:
            host, port = tier["host"], tier.get("port", 6379)
        scheme = "rediss" if tier.get("ssl") is True else "redis"
        auth = ""
        if "password" in tier:
            password = tier["password"]
            user = tier.get("username", "")
            secret = password if password.startswith("${") else quote(password, safe="")
            auth = f"{quote(user, safe='') if user else ''}:{secret}@"
        return f"{scheme}://{auth}{host}:{port}"

    def semantic(self, params: dict[str, Any], used: set[str], kind: str) -> dict[str, Any]:
        used.add("similarity_threshold")
        semantic: dict[str, Any] = {"type": kind}
        threshold = params.get("similarity_threshold")
        if threshold is None:
            self.warn(f"{CP}.similarity_threshold: not set (LiteLLM requires it for {kind}-semantic); "
                      "llmcache's default 0.9 applies")
        else:
            value = self.number(threshold, f"{CP}.similarity_threshold", positive=False)
            if isinstance(value, (int, float)) and not 0 <= value <= 1:
                self.warn(f"{CP}.similarity_threshold: {threshold!r} is outside 0..1; llmcache's default 0.9 applies")
            elif value is not None:
                semantic["similarity_threshold"] = value
        model_key = f"{kind}_semantic_cache_embedding_model"
        used.add(model_key)
        model = params.get(model_key) or LITELLM_EMBEDDING_DEFAULT
        embedding: dict[str, Any] = {"model": self.embedding_model(str(model), f"{CP}.{model_key}")}
        if params.get("semantic_cache_embedding_timeout") is not None:
            used.add("semantic_cache_embedding_timeout")
            timeout = self.number(params["semantic_cache_embedding_timeout"],
                                  f"{CP}.semantic_cache_embedding_timeout")
            if timeout is not None:
                embedding["timeout_s"] = timeout
        semantic["embedding"] = embedding
        return semantic

    def embedding_model(self, model: str, where: str) -> str:
        if model in self.model_names:
            return model  # a model_list name: llmcache routes it the same way
        provider, name = _split_provider(model, None)
        if provider in OPENAI_COMPATIBLE:
            return name
        self.warn(f"{where}: {model!r} is a {provider} model; llmcache embeds through upstream.base_url's "
                  "/v1/embeddings with the name as given -- add a model route for it or use "
                  "embedding: {local: all-MiniLM-L6-v2}")
        return model

    def object_tier(self, kind: str, params: dict[str, Any], used: set[str], names: dict[str, str],
                    *, required: set[str]) -> dict[str, Any]:
        used.update(names)
        tier: dict[str, Any] = {"type": kind}
        for theirs, ours in names.items():
            value = params.get(theirs)
            if value is None:
                if theirs in required:
                    raise LiteLLMImportError(f"{CP}.{theirs} is required for type {params.get('type')!r} "
                                             "(LiteLLM cannot start without it either)")
                continue
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise LiteLLMImportError(f"{CP}.{theirs} must be a string, not {kind_of(value)}")
            value = str(value)
            if ours == "path":
                value = value.strip("/")
                if not value:
                    continue
            tier[ours] = value
        return tier

    def caching_groups(self, value: Any) -> list[list[str]]:
        where = "router_settings.caching_groups"
        if value is None:
            return []
        if not isinstance(value, list):
            raise LiteLLMImportError(f"{where} must be a list of model-name lists, not {kind_of(value)}")
        seen: dict[str, int] = {}
        groups: list[list[str]] = []
        for i, group in enumerate(value):
            if isinstance(group, str):
                group = [group]
            if not isinstance(group, (list, tuple)) or not all(isinstance(m, str) for m in group):
                raise LiteLLMImportError(f"{where}[{i}] must be a list of model names")
            members: list[str] = []
            for model in group:
                if model in seen:
                    self.warn(f"{where}[{i}]: {model!r} is already in group {seen[model]}; kept there only "
                              "(llmcache groups must not overlap)")
                elif model not in members:
                    members.append(model)
            if not members:
                self.warn(f"{where}[{i}]: empty group dropped")
                continue
            for model in members:
                seen[model] = len(groups)
            groups.append(members)
        return groups


# --- helpers ---------------------------------------------------------------------------

def _split_provider(model: str, custom_provider: Any) -> tuple[str, str]:
    """(provider, model name as the provider knows it), the way LiteLLM reads `model`."""
    if isinstance(custom_provider, str) and custom_provider:
        prefix = custom_provider + "/"
        return custom_provider, model[len(prefix):] if model.startswith(prefix) else model
    if "/" in model:
        provider, rest = model.split("/", 1)
        return provider, rest
    for prefix, provider in BARE_NON_OPENAI:
        if model.startswith(prefix):
            return provider, model
    return "openai", model


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LiteLLMImportError(f"{where} must be a mapping, not {kind_of(value)}")
    return value


def _ordered(data: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    return {k: data[k] for k in order if k in data} | {k: v for k, v in data.items() if k not in order}


def _why_cache_key(key: str, kind: str) -> str:
    if kind not in KNOWN_TYPES:
        return f"not mapped (cache type {kind!r} has no llmcache equivalent)"
    if key in ("host", "port", "password", "username", "db", "ssl", "url", "redis_url", "redis_startup_nodes",
               "max_connections", "socket_timeout", "redis_flush_size") and kind not in REDIS_TYPES:
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
        return "not mapped (llmcache's s3 tier takes bucket, region, endpoint_url, access_key_id, " \
               "secret_access_key and path; use the standard AWS credential chain for the rest)"
    if key.startswith("valkey_"):
        return "not mapped (valkey-semantic has no llmcache equivalent)"
    if key == "similarity_threshold":
        return f"only used by semantic cache types, not by {kind!r} (LiteLLM ignores it too)"
    return f"not used by type {kind!r} (LiteLLM ignores it too)"


def _why_litellm_setting(key: str) -> str:
    if "callback" in key:
        return "llmcache has no logging callbacks; it exposes Prometheus metrics at /metrics"
    if key in ("drop_params", "modify_params", "additional_drop_params"):
        return "llmcache forwards request bodies unchanged"
    if key in ("num_retries", "fallbacks", "context_window_fallbacks", "default_fallbacks"):
        return "llmcache does no retries or fallbacks"
    if key in ("set_verbose", "json_logs"):
        return "llmcache logs at INFO through Python logging"
    return "no llmcache equivalent"


def _why_general_setting(key: str) -> str:
    if key == "master_key":
        return "llmcache does not authenticate callers; it forwards their credential upstream and scopes " \
               "entries by it. admin.token protects only the admin API -- set it separately"
    if key in ("database_url", "store_model_in_db"):
        return "llmcache keeps no database"
    return "no llmcache equivalent"
