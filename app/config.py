"""Typed settings, loaded and validated once at startup.

Sources, strongest first: environment (`LLMCACHE_<SECTION>__<KEY>`), then the YAML
file. `${VAR}` inside YAML strings is expanded from the environment before validation.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from app.encryption import parse_key
from app.keys import CREDENTIAL_HEADERS
from app.policy import CONTROLLABLE
from app.types import MAX_TTL_S, CallType, valid_namespace


class ConfigError(Exception):
    """The configuration cannot be used; the message names every offending key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(26_214_400, gt=0)
    workers: int = Field(1, ge=1)
    # What one client may hold: a body it is slow to send is answered 408 after this,
    # a request head past these bounds 431, a form past this many parts 400.
    body_timeout_s: float = Field(30, gt=0)
    max_header_bytes: int = Field(65_536, ge=1024)
    max_headers: int = Field(128, ge=8)
    max_form_parts: int = Field(256, ge=1)


class UpstreamSettings(Strict):
    base_url: str = "https://api.openai.com/v1"
    # The connection pool under httpx's interface: aiohttp's (half the CPU per call) or httpcore's.
    client: Literal["aiohttp", "httpx"] = "aiohttp"
    api_key: str | None = None
    timeout_s: float = Field(600, gt=0)
    connect_timeout_s: float = Field(10, gt=0)
    max_connections: int = Field(1000, ge=1)


class ModelRoute(Strict):
    name: str
    base_url: str | None = None
    api_key: str | None = None
    upstream_model: str | None = None


class TierBase(Strict):
    name: str | None = None
    required: bool = False
    # Remote tiers get a short timeout so that a slow backend degrades into a miss.
    timeout_s: float | None = Field(None, gt=0)
    compress_min_bytes: int | None = Field(None, ge=0)
    # After this many failures in a row the tier is skipped for breaker_reset_s, then probed.
    breaker_failures: int = Field(5, ge=1)
    breaker_reset_s: float = Field(2.0, gt=0)
    # Writes to a remote tier wait in a bounded buffer, off the request path, and are
    # written in batches by `write_concurrency` writers; when it holds `write_queue`
    # entries or `write_buffer_bytes`, a new write is dropped (and counted).
    write_queue: int = Field(10_000, ge=1)
    write_concurrency: int = Field(2, ge=1)
    write_buffer_bytes: int = Field(268_435_456, ge=1)


class LocalTierSettings(TierBase):
    type: Literal["local"]
    max_entries: int = Field(10_000, ge=1)
    max_bytes: int = Field(268_435_456, ge=1)


class DiskTierSettings(TierBase):
    type: Literal["disk"]
    path: str = "./.llmcache"
    max_bytes: int = Field(2_147_483_648, ge=1)
    timeout_s: float | None = Field(1.0, gt=0)


class RedisNode(Strict):
    host: str
    port: int = Field(6379, ge=1, le=65535)


class SentinelNode(Strict):
    host: str
    port: int = Field(26379, ge=1, le=65535)


class RedisTierSettings(TierBase):
    type: Literal["redis"]
    url: str | None = None
    host: str = "localhost"
    port: int = Field(6379, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    db: int = Field(0, ge=0)
    ssl: bool = False
    startup_nodes: tuple[RedisNode, ...] = ()  # non-empty: Redis Cluster
    # Non-empty: the master of `service_name`, as these Sentinels name it now (failovers followed).
    sentinels: tuple[SentinelNode, ...] = ()
    service_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    prefix: str = "llmcache:"
    max_connections: int = Field(64, ge=1)
    timeout_s: float | None = Field(0.1, gt=0)
    compress_min_bytes: int | None = Field(4096, ge=0)
    # Cross-process single flight: how long a lock for one upstream call may live.
    lock_ttl_s: float = Field(60, gt=0)

    @model_validator(mode="after")
    def _one_topology(self) -> RedisTierSettings:
        if self.sentinels and self.startup_nodes:
            raise ValueError("set sentinels (Sentinel) or startup_nodes (Redis Cluster), not both")
        if self.sentinels and self.url:
            raise ValueError("set sentinels or url, not both: Sentinel names the master's address")
        if bool(self.sentinels) != bool(self.service_name):
            raise ValueError("sentinels and service_name go together: the Sentinels and the master they name")
        return self


class ObjectTierBase(TierBase):
    """Object stores: one object per entry under `path`/namespace/key."""

    path: str = "llmcache"
    timeout_s: float | None = Field(1.0, gt=0)
    compress_min_bytes: int | None = Field(1024, ge=0)
    # A store that stops answering is skipped at once, and probed again later.
    breaker_failures: int = Field(1, ge=1)
    breaker_reset_s: float = Field(5.0, gt=0)


class S3TierSettings(ObjectTierBase):
    type: Literal["s3"]
    bucket: str
    region: str | None = None
    endpoint_url: str | None = None  # S3-compatible stores (MinIO, R2) and emulators
    access_key_id: str | None = None  # null: the standard AWS credential chain
    secret_access_key: str | None = None


class GCSTierSettings(ObjectTierBase):
    type: Literal["gcs"]
    bucket: str
    service_account_json: str | None = None  # path of a key file; null: default credentials
    endpoint: str | None = None  # an emulator: anonymous access


class AzureBlobTierSettings(ObjectTierBase):
    type: Literal["azure_blob"]
    account_url: str | None = None  # with DefaultAzureCredential
    connection_string: str | None = None
    container: str

    @model_validator(mode="after")
    def _one_way_in(self) -> AzureBlobTierSettings:
        if not self.account_url and not self.connection_string:
            raise ValueError("azure_blob needs account_url or connection_string")
        return self


TierSettings = Annotated[
    LocalTierSettings | DiskTierSettings | RedisTierSettings | S3TierSettings | GCSTierSettings | AzureBlobTierSettings,
    Field(discriminator="type"),
]


class EmbeddingSettings(Strict):
    model: str | None = None  # embed through the upstream's /v1/embeddings (cached exactly)
    local: str | None = None  # in-process model (extra: pip install .[local])
    timeout_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> EmbeddingSettings:
        if (self.model is None) == (self.local is None):
            raise ValueError("set exactly one of embedding.model (upstream) or embedding.local (in-process)")
        return self


class QdrantSettings(Strict):
    url: str | None = None  # null: embedded, in-process (app/semantic/matrix.py)
    api_key: str | None = None
    collection: str = "llmcache"
    path: str | None = None  # embedded mode: persist here (null: in memory)
    # Embedded mode: beyond this many vectors the oldest is evicted. Each costs its
    # dimensions × 4 bytes and ~1 kB more (100k × 384 dimensions: about 250 MB, up to
    # 1.5 times that while a context's matrix is being grown).
    max_entries: int = Field(200_000, ge=1)


class RedisVectorSettings(Strict):
    url: str = "redis://localhost:6379"
    index: str = "llmcache-semantic"


# Chosen from the precision/recall curve of bench/semantic_eval.py (docs/benchmarks.md):
# the highest recall whose precision stays >= 0.97 one step lower too.
LOCAL_MODEL_THRESHOLDS = {"all-minilm-l6-v2": 0.80}
UPSTREAM_MODEL_THRESHOLD = 0.90


class SemanticSettings(Strict):
    type: Literal["qdrant", "redis"]
    similarity_threshold: float | None = Field(None, ge=0, le=1)  # null: the embedder's default
    embedding: EmbeddingSettings = EmbeddingSettings(model="text-embedding-3-small")
    qdrant: QdrantSettings = QdrantSettings()
    redis: RedisVectorSettings = RedisVectorSettings()
    # Refuse matches whose texts differ in numbers, negation, entities, direction, ...
    guard: bool = True
    # Questions the guard cannot read (not English): match only the same wording, or never.
    other_languages: Literal["same_wording", "refuse"] = "same_wording"
    candidates: int = Field(5, ge=1, le=100)
    timeout_s: float = Field(1.0, gt=0)

    @property
    def threshold(self) -> float:
        if self.similarity_threshold is not None:
            return self.similarity_threshold
        local = (self.embedding.local or "").lower().rpartition("/")[2]
        return LOCAL_MODEL_THRESHOLDS.get(local, UPSTREAM_MODEL_THRESHOLD)


def _valid_key(secret: SecretStr) -> SecretStr:
    parse_key(secret.get_secret_value())  # the error names the key's place, never its value
    return secret


EncryptionKey = Annotated[SecretStr, AfterValidator(_valid_key)]


def _namespace(namespace: str) -> str:
    if not valid_namespace(namespace):
        raise ValueError("1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit")
    return namespace


Namespace = Annotated[str, AfterValidator(_namespace)]


class EncryptionSettings(Strict):
    """AES-256-GCM at rest. `key`: one key; `keys`: a rotation, the first seals new
    entries and every one opens. SecretStr: a key never appears in a repr or a log."""

    key: EncryptionKey | None = None
    keys: tuple[EncryptionKey, ...] = ()

    @model_validator(mode="after")
    def _exactly_one_form(self) -> EncryptionSettings:
        if (self.key is None) == (not self.keys):
            raise ValueError("set either key (one key) or keys (a list, the first used for new writes)")
        return self

    def secrets(self) -> list[bytes]:
        chosen = [self.key] if self.key is not None else list(self.keys)
        return [parse_key(k.get_secret_value()) for k in chosen]


class StaleSettings(Strict):
    """How long past its TTL an entry may still answer (0: never), RFC 5861's two cases;
    tiers keep an entry this much longer than its TTL (the larger of the two)."""

    if_error_s: float = Field(0, ge=0, le=MAX_TTL_S)
    while_revalidate_s: float = Field(0, ge=0, le=MAX_TTL_S)


class CacheSettings(Strict):
    mode: Literal["default_on", "default_off"] = "default_on"
    ttl_s: float | None = Field(3600, gt=0, le=MAX_TTL_S)
    namespace: Namespace | None = None
    call_types: tuple[CallType, ...] = tuple(CallType)
    share_across_keys: bool = False
    caching_groups: tuple[tuple[str, ...], ...] = ()
    # Top-level body parameters left out of every key (e.g. user, metadata).
    ignore_params: tuple[str, ...] = ()
    tiers: tuple[TierSettings, ...] = (
        LocalTierSettings(type="local"),
        DiskTierSettings(type="disk"),
    )
    semantic: SemanticSettings | None = None
    encryption: EncryptionSettings | None = None
    stale: StaleSettings = StaleSettings()

    @field_validator("tiers")
    @classmethod
    def _unique_tier_names(cls, tiers: tuple[TierBase, ...]) -> tuple[TierBase, ...]:
        names = [tier_name(t) for t in tiers]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"tier names must be unique, repeated: {', '.join(duplicated)}")
        return tiers

    @field_validator("caching_groups")
    @classmethod
    def _groups_disjoint(cls, groups: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        seen: set[str] = set()
        for group in groups:
            if not group:
                raise ValueError("a caching group cannot be empty")
            for model in group:
                if model in seen:
                    raise ValueError(f"model {model!r} is in more than one caching group")
                seen.add(model)
        return groups


# A policy's name is sent back as the `x-cache-policy` header: a short token.
_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
_BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class PolicyMatch(Strict):
    """What a request must carry for its policy to apply: every condition given must hold
    (none given: every request)."""

    credential_sha256: tuple[str, ...] | None = None  # SHA-256 hex of the API key, never the key
    header: dict[str, str] | None = None  # e.g. {x-team: ml}: sent once, with exactly this value
    model: str | None = None  # a glob over the body's `model`, as sent: "gpt-4o*"

    @field_validator("credential_sha256")
    @classmethod
    def _digests(cls, digests: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if digests is None:
            return None
        if not digests:
            raise ValueError("list at least one digest, or leave credential_sha256 out to match any credential")
        lowered = tuple(d.strip().lower() for d in digests)
        bad = [d for d in lowered if not _SHA256_HEX.match(d)]
        if bad:
            raise ValueError(f"not a SHA-256 hex digest (64 hex digits): {bad[0][:80]!r}")
        return lowered

    @field_validator("header")
    @classmethod
    def _headers(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        if headers is None:
            return None
        if not headers:
            raise ValueError("name at least one header, or leave header out to match any request")
        out: dict[str, str] = {}
        for name, value in headers.items():
            lowered = name.strip().lower()
            if not _HEADER_NAME.match(lowered):
                raise ValueError(f"not a header name: {name!r}")
            if lowered in out:
                raise ValueError(f"header {lowered!r} is named twice")
            if lowered.encode() in CREDENTIAL_HEADERS:
                raise ValueError(f"{lowered!r} carries a credential: match it with credential_sha256")
            if not isinstance(value, str) or not value.strip() or _BAD_HEADER_VALUE.search(value):
                raise ValueError(f"header {lowered!r}: the value must be non-empty text without control characters")
            out[lowered] = value.strip()
        return out

    @field_validator("model")
    @classmethod
    def _glob(cls, model: str | None) -> str | None:
        if model is not None and not model:
            raise ValueError("an empty glob matches no model: leave model out to match any")
        return model


class PolicySettings(Strict):
    """One tenant's cache policy (`app/policy.py`); a field left null takes the global `cache` value."""

    name: str
    match: PolicyMatch = PolicyMatch()
    mode: Literal["default_on", "default_off"] | None = None
    ttl_s: float | None = Field(None, gt=0, le=MAX_TTL_S)  # default TTL of its entries
    max_ttl_s: float | None = Field(None, gt=0, le=MAX_TTL_S)  # longer TTLs asked for are clamped to this
    allow_controls: tuple[str, ...] | None = None  # only these per-request controls (the rest: 400)
    deny_controls: tuple[str, ...] | None = None  # these per-request controls are a 400
    semantic: bool | None = None
    namespace: Namespace | None = None  # its entries' namespace; a request's own is nested in it
    stale_if_error_s: float | None = Field(None, ge=0, le=MAX_TTL_S)
    stale_while_revalidate_s: float | None = Field(None, ge=0, le=MAX_TTL_S)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _POLICY_NAME.match(name):
            raise ValueError("1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit")
        return name

    @field_validator("allow_controls", "deny_controls")
    @classmethod
    def _known_controls(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(names or ()) - CONTROLLABLE)
        if unknown:
            raise ValueError(f"unknown cache control {unknown[0]!r}; known: {', '.join(sorted(CONTROLLABLE))}")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> PolicySettings:
        if self.allow_controls is not None and self.deny_controls is not None:
            raise ValueError("set allow_controls or deny_controls, not both")
        if self.ttl_s is not None and self.max_ttl_s is not None and self.ttl_s > self.max_ttl_s:
            raise ValueError("ttl_s is longer than max_ttl_s")
        return self

    @property
    def allows_namespace(self) -> bool:
        """Whether a request may name a namespace of its own (nested in this policy's)."""
        if self.allow_controls is not None:
            return "namespace" in self.allow_controls
        return "namespace" not in (self.deny_controls or ())


def check_policies(policies: tuple[PolicySettings, ...], cache: CacheSettings) -> None:
    names = [p.name for p in policies]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"policy names must be unique, repeated: {', '.join(repeated)}")
    if cache.semantic is None:
        for policy in policies:
            if policy.semantic:
                raise ValueError(f"policy {policy.name!r} sets semantic: true, but cache.semantic is not configured")
    # A request's namespace is nested as `<policy namespace>.<its own>`: no other namespace
    # may be reachable that way, or that tenant could read another's entries.
    others = [(p.name, p.namespace) for p in policies if p.namespace is not None]
    if cache.namespace is not None:
        others.append(("cache", cache.namespace))
    for policy in policies:
        if policy.namespace is None or not policy.allows_namespace:
            continue
        for name, namespace in others:
            if namespace.startswith(policy.namespace + "."):
                raise ValueError(
                    f"policy {policy.name!r} lets its requests name namespaces under {policy.namespace!r}, "
                    f"which would reach {name!r}'s namespace {namespace!r}: deny its namespace control, "
                    "or choose namespaces that do not nest"
                )


class AdminSettings(Strict):
    token: str | None = None

    @field_validator("token")
    @classmethod
    def _empty_is_off(cls, token: str | None) -> str | None:
        # An empty token would let an empty bearer in: it means "not configured".
        return token or None


class MetricsSettings(Strict):
    enabled: bool = True


# What `tracing.enabled` imports: the `otel` extra. The exporter's endpoint, headers,
# sampler and batching come from the standard OTEL_* environment variables.
OTEL_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
OTEL_EXTRA = "pip install 'llmcache[otel]'"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


class TracingSettings(Strict):
    enabled: bool = False
    service_name: str = Field("llmcache", min_length=1)

    @model_validator(mode="after")
    def _extra_installed(self) -> TracingSettings:
        missing = [m for m in OTEL_MODULES if not _installed(m)] if self.enabled else []
        if missing:
            raise ValueError(f"enabled needs the otel extra ({', '.join(missing)} not found): {OTEL_EXTRA}")
        return self


# USD per million tokens: above this a price is a typo (and a count times it could overflow).
MAX_PRICE = 1_000_000


class ModelPrice(Strict):
    """USD per million tokens of one model, or of every model a glob matches (`app/prices.py`)."""

    model: str = Field(min_length=1, max_length=256)
    input: float = Field(ge=0, le=MAX_PRICE, allow_inf_nan=False, strict=True)
    output: float = Field(ge=0, le=MAX_PRICE, allow_inf_nan=False, strict=True)
    cached_input: float | None = Field(None, ge=0, le=MAX_PRICE, allow_inf_nan=False, strict=True)  # default: input's


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMCACHE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    models: tuple[ModelRoute, ...] = ()
    cache: CacheSettings = CacheSettings()
    admin: AdminSettings = AdminSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    prices: tuple[ModelPrice, ...] = ()
    # Per-tenant policies, the first that matches a request applies (`app/policy.py`).
    policies: tuple[PolicySettings, ...] = ()

    @model_validator(mode="after")
    def _policies(self) -> Settings:
        check_policies(self.policies, self.cache)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init carries the YAML file; env is listed first so it overrides the file.
        return (env_settings, init_settings)


# Settings whose whole value is a secret; any other string is shown with the secret parts
# of a URL (password, query string: SAS tokens, signatures) masked.
SECRET_KEYS = frozenset(
    ("password", "sentinel_password", "secret_access_key", "connection_string", "api_key", "token", "key", "keys")
)
MASK = "***"


def redact(name: str, value: Any) -> Any:
    """A setting's value as it may be printed or logged."""
    if value is None:
        return None
    if name in SECRET_KEYS:
        return MASK
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None or "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    query = MASK if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def tier_name(tier: TierBase) -> str:
    return tier.name or tier.type  # type: ignore[attr-defined]


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any) -> Any:
    """Replace `${VAR}` in every string of a parsed YAML tree; an unset VAR is an error."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"environment variable {name} is not set (referenced as ${{{name}}})")
            return os.environ[name]

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def read_yaml_mapping(
    path: str | os.PathLike[str], error: Callable[[str], Exception], top_level: str
) -> dict[str, Any] | None:
    """The mapping a YAML file holds (None if the file is empty); any other content, or a
    file that cannot be read, raises `error(message)` naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"cannot read {path}: not UTF-8 text ({exc.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise error(f"{path}: {top_level}, not {kind_of(data)}")
    return data


def kind_of(value: Any) -> str:
    """What a parsed YAML/JSON value is, in words, for error messages."""
    if value is None:
        return "nothing"
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def load_settings(path: str | os.PathLike[str] | None) -> Settings:
    """Read the YAML file (if any), apply env overrides, validate; raise ConfigError."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml_mapping(path, ConfigError, "the top level must be a mapping of sections")
        data = expand_env(loaded or {})
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except ValueError as exc:  # env values that are not valid JSON for complex fields
        raise ConfigError(str(exc)) from None


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) > 3 and loc[:2] == ["cache", "tiers"]:
            del loc[3]  # the union tag pydantic inserts after the tier index
        location = ".".join(str(part) for part in loc)
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "union_tag_invalid":
            tag = err.get("ctx", {}).get("tag")
            expected = err.get("ctx", {}).get("expected_tags")
            message = f"unknown tier type {tag!r} (available: {expected})"
        else:
            message = err["msg"]
        lines.append(f"{location}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
