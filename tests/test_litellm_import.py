"""`llmcache import-litellm`: LiteLLM proxy configs converted into configs that load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings, load_settings
from app.litellm_import import Conversion, LiteLLMImportError, convert, convert_file, render
from tests.conftest import run_cli

DATA = Path(__file__).resolve().parent / "data" / "litellm"

# Values for every ${VAR} the example configs end up referencing.
ENV = {
    "OPENAI_API_KEY": "sk-openai",
    "REDIS_HOST": "redis.example",
    "REDIS_PORT": "6390",
    "REDIS_PASSWORD": "redis-secret",
    "QDRANT_API_BASE": "http://qdrant.example:6333",
    "QDRANT_API_KEY": "qdrant-secret",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "GCS_PATH_SERVICE_ACCOUNT": "/etc/gcs/sa.json",
    "EMBEDDINGS_API_KEY": "sk-embeddings",
    "GROQ_API_KEY": "gsk-groq",
}
CP = "litellm_settings.cache_params"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("LLMCACHE_"):
            monkeypatch.delenv(name)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return ENV


def load(conversion: Conversion, tmp_path: Path) -> Settings:
    """Write the rendered YAML and load it the way `llmcache serve` / check-config do."""
    path = tmp_path / "llmcache.yaml"
    path.write_text(render(conversion), encoding="utf-8")
    return load_settings(path)


def warned(conversion: Conversion, *fragments: str) -> bool:
    return any(all(f in w for f in fragments) for w in conversion.warnings)


def tier_types(settings: Settings) -> list[str]:
    return [t.type for t in settings.cache.tiers]  # type: ignore[attr-defined]


# --- one example per LiteLLM cache type -------------------------------------------------


def test_local(env, tmp_path):
    c = convert_file(DATA / "local.yaml")
    assert c.config["cache"]["tiers"] == [{"type": "local"}]
    assert c.config["cache"]["ttl_s"] == 120  # default_in_memory_ttl beats ttl for type local
    assert c.config["cache"]["call_types"] == ["chat_completions", "embeddings", "rerank"]
    # openai/ stripped; upstream_model left out when it equals the name
    assert c.config["models"] == [{"name": "gpt-4o-mini", "api_key": "${OPENAI_API_KEY}"}]
    assert not warned(c, f"{CP}.supported_call_types")  # arerank is cached too
    assert warned(c, f"{CP}.ttl", "default_in_memory_ttl")
    settings = load(c, tmp_path)
    assert tier_types(settings) == ["local"]
    assert settings.cache.mode == "default_on"
    assert settings.cache.call_types == ("chat_completions", "embeddings", "rerank")
    assert settings.models[0].api_key == "sk-openai"


def test_redis(env, tmp_path):
    c = convert_file(DATA / "redis.yaml")
    cache = c.config["cache"]
    assert cache["tiers"] == [
        {"type": "local"},
        {"type": "redis", "host": "${REDIS_HOST}", "port": 6380, "password": "${REDIS_PASSWORD}"},
    ]
    assert cache["mode"] == "default_off"
    assert cache["namespace"] == "litellm.caching.caching"
    assert cache["ttl_s"] == 600
    assert cache["call_types"] == ["chat_completions", "completions", "embeddings", "transcriptions"]
    assert c.warnings == []  # everything in this config has a place
    settings = load(c, tmp_path)
    redis = settings.cache.tiers[1]
    assert (redis.host, redis.port, redis.password) == ("redis.example", 6380, "redis-secret")
    assert settings.cache.namespace == "litellm.caching.caching"
    assert settings.cache.mode == "default_off"


def test_redis_cluster(env, tmp_path):
    c = convert_file(DATA / "redis_cluster.yaml")
    redis = c.config["cache"]["tiers"][1]
    assert redis["startup_nodes"] == [{"host": "127.0.0.1", "port": 7001}, {"host": "127.0.0.1", "port": 7002}]
    assert redis["password"] == "${REDIS_PASSWORD}"
    assert "host" not in redis
    assert "models" not in c.config  # model_name "*" without api_base is the default route
    settings = load(c, tmp_path)
    assert [(n.host, n.port) for n in settings.cache.tiers[1].startup_nodes] == [
        ("127.0.0.1", 7001),
        ("127.0.0.1", 7002),
    ]


def test_redis_semantic(env, tmp_path):
    c = convert_file(DATA / "redis_semantic.yaml")
    cache = c.config["cache"]
    assert [t["type"] for t in cache["tiers"]] == ["local", "redis"]
    semantic = cache["semantic"]
    assert semantic["type"] == "redis"
    assert semantic["similarity_threshold"] == 0.8
    # a model_list name: kept, llmcache routes the embedding call through that route
    assert semantic["embedding"] == {"model": "azure-embedding-model"}
    assert semantic["redis"] == {"url": "redis://:p%40ss%20word@redis.internal:6379"}
    assert warned(c, f"{CP}.redis_semantic_cache_index_name", "not reused")
    assert warned(c, "litellm_settings.set_verbose")
    assert {
        "name": "azure-embedding-model",
        "base_url": "https://embeddings.example.com/v1",
        "api_key": "${EMBEDDINGS_API_KEY}",
        "upstream_model": "text-embedding-3-small",
    } in c.config["models"]
    settings = load(c, tmp_path)
    assert settings.cache.semantic.type == "redis"
    assert settings.cache.semantic.redis.index == "llmcache-semantic"
    assert settings.cache.semantic.embedding.model == "azure-embedding-model"
    assert settings.cache.tiers[1].password == "p@ss word"


def test_qdrant_semantic(env, tmp_path):
    c = convert_file(DATA / "qdrant_semantic.yaml")
    cache = c.config["cache"]
    assert cache["tiers"] == [{"type": "local"}]
    assert cache["semantic"] == {
        "type": "qdrant",
        "similarity_threshold": 0.85,
        "embedding": {"model": "openai-embedding"},
        "qdrant": {"url": "${QDRANT_API_BASE}", "api_key": "${QDRANT_API_KEY}"},
    }
    assert warned(c, f"{CP}.qdrant_quantization_config")
    assert warned(c, f"{CP}.qdrant_collection_name", "test_collection")
    settings = load(c, tmp_path)
    assert settings.cache.semantic.qdrant.url == "http://qdrant.example:6333"
    assert settings.cache.semantic.qdrant.api_key == "qdrant-secret"
    assert settings.cache.semantic.qdrant.collection == "llmcache"


def test_s3(env, tmp_path):
    c = convert_file(DATA / "s3.yaml")
    assert c.config["cache"]["tiers"][1] == {
        "type": "s3",
        "bucket": "cache-bucket-litellm",
        "region": "us-west-2",
        "endpoint_url": "https://s3.us-west-2.amazonaws.com",
        "access_key_id": "${AWS_ACCESS_KEY_ID}",
        "secret_access_key": "${AWS_SECRET_ACCESS_KEY}",
        "path": "litellm/cache",
    }
    assert warned(c, f"{CP}.s3_use_ssl")
    settings = load(c, tmp_path)
    s3 = settings.cache.tiers[1]
    assert (s3.type, s3.bucket, s3.secret_access_key, s3.path) == (
        "s3",
        "cache-bucket-litellm",
        "aws-secret",
        "litellm/cache",
    )


def test_gcs(env, tmp_path):
    c = convert_file(DATA / "gcs.yaml")
    assert c.config["cache"]["tiers"][1] == {
        "type": "gcs",
        "bucket": "cache-bucket-litellm",
        "service_account_json": "${GCS_PATH_SERVICE_ACCOUNT}",
        "path": "cache",
    }
    assert warned(c, f"{CP}.host", "not used by type 'gcs'")
    settings = load(c, tmp_path)
    gcs = settings.cache.tiers[1]
    assert (gcs.type, gcs.bucket, gcs.service_account_json) == ("gcs", "cache-bucket-litellm", "/etc/gcs/sa.json")


@pytest.mark.parametrize("spelling", ["azure-blob", "azure_blob"])
def test_azure_blob(env, tmp_path, spelling):
    data = yaml.safe_load((DATA / "azure_blob.yaml").read_text())
    data["litellm_settings"]["cache_params"]["type"] = spelling
    c = convert(data)
    assert c.config["cache"]["tiers"][1] == {
        "type": "azure_blob",
        "account_url": "https://litellmcache.blob.core.windows.net",
        "container": "litellm-cache",
    }
    assert c.warnings == []
    settings = load(c, tmp_path)
    assert tier_types(settings) == ["local", "azure_blob"]
    assert settings.cache.tiers[1].container == "litellm-cache"


def test_azure_blob_file(env, tmp_path):
    settings = load(convert_file(DATA / "azure_blob.yaml"), tmp_path)
    assert tier_types(settings) == ["local", "azure_blob"]


def test_disk(env, tmp_path):
    c = convert_file(DATA / "disk.yaml")
    assert c.config["cache"]["tiers"] == [{"type": "local"}, {"type": "disk", "path": "/var/cache/litellm"}]
    assert c.config["cache"]["ttl_s"] == 86400
    settings = load(c, tmp_path)
    assert settings.cache.tiers[1].path == "/var/cache/litellm"
    assert settings.cache.ttl_s == 86400


def test_model_list_and_caching_groups(env, tmp_path):
    c = convert_file(DATA / "router.yaml")
    models = {m["name"]: m for m in c.config["models"]}
    assert list(models) == [
        "gpt-4o",
        "openai-gpt-3.5-turbo",
        "azure-gpt-3.5-turbo",
        "llama-3-70b",
        "local-vllm",
        "claude-sonnet",
        "titan",
    ]
    assert models["gpt-4o"] == {"name": "gpt-4o", "api_key": "${OPENAI_API_KEY}"}  # first deployment kept
    assert models["openai-gpt-3.5-turbo"]["upstream_model"] == "gpt-3.5-turbo"
    assert models["llama-3-70b"] == {
        "name": "llama-3-70b",
        "base_url": "https://api.groq.com/openai/v1",
        "api_key": "${GROQ_API_KEY}",
        "upstream_model": "llama3-70b-8192",
    }
    assert models["local-vllm"] == {
        "name": "local-vllm",
        "base_url": "http://vllm.internal:8000/v1",
        "upstream_model": "meta-llama/Meta-Llama-3-8B-Instruct",
    }
    # providers with their own API: name-only routes (forwarded unchanged to upstream.base_url)
    assert models["claude-sonnet"] == {"name": "claude-sonnet"}
    assert models["azure-gpt-3.5-turbo"] == {"name": "azure-gpt-3.5-turbo"}
    assert models["titan"] == {"name": "titan"}
    # the second group repeats a model: it stays in the first group only
    assert c.config["cache"]["caching_groups"] == [["openai-gpt-3.5-turbo", "azure-gpt-3.5-turbo"], ["gpt-4o"]]
    assert c.config["upstream"] == {"timeout_s": 120}
    for fragments in [
        ("model_list[1] (gpt-4o)", "load balancing", "kept model_list[0]"),
        ("model_list[0] (gpt-4o)", "rpm"),
        ("model_list[6] (claude-sonnet)", "anthropic"),
        ("model_list[7] (titan)", "bedrock"),
        ("model_list[3] (azure-gpt-3.5-turbo)", "azure"),
        ("model_list[7] (titan).model_info",),
        ("router_settings.caching_groups[1]", "openai-gpt-3.5-turbo"),
        ("router_settings.routing_strategy",),
        ("litellm_settings.success_callback",),
        ("general_settings.master_key", "api_keys"),
        ("environment_variables", "REDIS_HOST"),
    ]:
        assert warned(c, *fragments), fragments
    settings = load(c, tmp_path)
    assert settings.cache.caching_groups == (("openai-gpt-3.5-turbo", "azure-gpt-3.5-turbo"), ("gpt-4o",))
    assert settings.upstream.timeout_s == 120
    assert {m.name: m.api_key for m in settings.models}["llama-3-70b"] == "gsk-groq"


def test_check_config_cli_accepts_the_rendered_file(env, tmp_path):
    c = convert_file(DATA / "router.yaml")
    path = tmp_path / "llmcache.yaml"
    path.write_text(render(c), encoding="utf-8")
    result = run_cli("check-config", str(path), env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    assert f"{path}: ok" in result.stdout


def test_check_config_cli_names_a_missing_variable(env, tmp_path, monkeypatch):
    monkeypatch.delenv("REDIS_PASSWORD")
    path = tmp_path / "llmcache.yaml"
    path.write_text(render(convert_file(DATA / "redis.yaml")), encoding="utf-8")
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert "REDIS_PASSWORD" in result.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.yaml")))
def test_every_example_validates_as_plain_data_and_round_trips(name):
    c = convert_file(DATA / name)
    Settings(**c.config)  # ${VAR}s stay literal strings here: every one sits in a string field
    text = render(c)
    assert text.startswith("# llmcache config")
    assert yaml.safe_load(text) == c.config
    for warning in c.warnings:
        assert "\n" not in warning and f"#   - {warning}" in text


# --- secrets, defaults and what LiteLLM read from its environment -----------------------


def test_os_environ_becomes_dollar_brace():
    c = convert(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "litellm_params": {
                        "model": "openai/m",
                        "api_base": "os.environ/MY_BASE",
                        "api_key": "os.environ/MY_KEY",
                    },
                }
            ],
            "litellm_settings": {"cache": True, "cache_params": {"type": "local"}},
        }
    )
    assert c.config["models"] == [{"name": "m", "base_url": "${MY_BASE}", "api_key": "${MY_KEY}"}]


def test_odd_values_are_warned_not_mapped():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "request_timeout": "soon",
                "cache_params": {
                    "type": "redis",
                    "host": "h",
                    "password": "a${B}c",
                    "port": "nan",
                    "ttl": -5,
                    "ssl": "maybe",
                },
            }
        }
    )
    tier = c.config["cache"]["tiers"][1]
    assert tier == {"type": "redis", "host": "h", "password": "a${B}c"}
    assert "ttl_s" not in c.config["cache"] and "upstream" not in c.config
    for key in ("litellm_settings.request_timeout", f"{CP}.port", f"{CP}.ttl", f"{CP}.ssl", f"{CP}.password"):
        assert warned(c, key), key


def test_cache_off_becomes_default_off(env, tmp_path):
    c = convert({"model_list": [{"model_name": "gpt-4o", "litellm_params": {"model": "gpt-4o"}}]})
    assert c.config["cache"] == {"mode": "default_off"}
    assert warned(c, "litellm_settings.cache", "missing", "default_off")
    settings = load(c, tmp_path)
    assert settings.cache.mode == "default_off"
    assert tier_types(settings) == ["local", "disk"]  # our embedded default tiers

    c = convert({"litellm_settings": {"cache": False, "cache_params": {"type": "disk", "disk_cache_dir": "/d"}}})
    assert c.config["cache"]["mode"] == "default_off"
    assert c.config["cache"]["tiers"][1] == {"type": "disk", "path": "/d"}
    assert warned(c, "litellm_settings.cache", "False")


def test_cache_true_alone_is_redis_from_the_environment(env, tmp_path):
    c = convert({"litellm_settings": {"cache": True}})
    assert c.config["cache"]["tiers"][1] == {"type": "redis", "host": "${REDIS_HOST}", "port": "${REDIS_PORT}"}
    assert warned(c, "REDIS_HOST", "REDIS_PASSWORD", "REDIS_URL")
    assert warned(c, f"{CP}.type", "redis")
    settings = load(c, tmp_path)
    assert (settings.cache.tiers[1].host, settings.cache.tiers[1].port) == ("redis.example", 6390)


def test_redis_url_ssl_and_client_settings():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {
                    "type": "redis",
                    "url": "os.environ/REDIS_URL",
                    "ssl": True,
                    "max_connections": 32,
                    "socket_timeout": 0.5,
                    "redis_flush_size": 100,
                    "port": 1234,
                },
            }
        }
    )
    tier = c.config["cache"]["tiers"][1]
    assert tier == {"type": "redis", "url": "${REDIS_URL}", "ssl": True, "max_connections": 32, "timeout_s": 0.5}
    assert warned(c, f"{CP}.port", "url is set")
    assert warned(c, f"{CP}.redis_flush_size")


def test_redis_default_in_redis_ttl_wins():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {
                    "type": "redis",
                    "host": "h",
                    "password": "p",
                    "ttl": 10,
                    "default_in_redis_ttl": 30,
                    "default_in_memory_ttl": 5,
                },
            }
        }
    )
    assert c.config["cache"]["ttl_s"] == 30
    assert warned(c, f"{CP}.default_in_memory_ttl")


def test_semantic_defaults_follow_litellm():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {"type": "qdrant-semantic", "qdrant_collection_name": "c"},
            }
        }
    )
    semantic = c.config["cache"]["semantic"]
    assert semantic["embedding"] == {"model": "text-embedding-ada-002"}  # LiteLLM's default embedder
    assert semantic["qdrant"] == {"url": "${QDRANT_URL}"}
    assert "similarity_threshold" not in semantic
    assert warned(c, f"{CP}.similarity_threshold", "0.9")
    assert warned(c, f"{CP}.qdrant_api_base", "QDRANT_URL")


def test_semantic_embedding_prefix_and_timeout():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {
                    "type": "redis-semantic",
                    "host": "h",
                    "port": 6379,
                    "password": "os.environ/RP",
                    "ssl": True,
                    "similarity_threshold": 0.95,
                    "redis_semantic_cache_embedding_model": "openai/text-embedding-3-large",
                    "semantic_cache_embedding_timeout": 3,
                },
            }
        }
    )
    semantic = c.config["cache"]["semantic"]
    assert semantic["embedding"] == {"model": "text-embedding-3-large", "timeout_s": 3}
    assert semantic["redis"] == {"url": "rediss://:${RP}@h:6379"}


def test_namespace_is_made_valid():
    c = convert({"litellm_settings": {"cache": True, "cache_params": {"type": "local", "namespace": "team a:cache"}}})
    assert c.config["cache"]["namespace"] == "team-a-cache"
    assert warned(c, f"{CP}.namespace", "team a:cache")


# --- warnings: nothing dropped silently -------------------------------------------------


def test_unknown_and_misplaced_cache_params_are_named():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {
                    "type": "local",
                    "host": "redis.example",
                    "similarity_threshold": 0.9,
                    "frobnicate": 1,
                    "qdrant_quantization_config": "binary",
                },
            }
        }
    )
    assert c.config["cache"]["tiers"] == [{"type": "local"}]
    assert warned(c, f"{CP}.host", "not used by type 'local'")
    assert warned(c, f"{CP}.similarity_threshold", "semantic")
    assert warned(c, f"{CP}.frobnicate", "unknown")
    assert warned(c, f"{CP}.qdrant_quantization_config")


def test_unknown_cache_type_keeps_the_local_tier():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {"type": "valkey-semantic", "host": "v", "valkey_semantic_cache_index_name": "i"},
            }
        }
    )
    assert c.config["cache"]["tiers"] == [{"type": "local"}]
    assert warned(c, f"{CP}.type", "valkey-semantic")
    assert warned(c, f"{CP}.host", "valkey-semantic")
    assert warned(c, f"{CP}.valkey_semantic_cache_index_name")


def test_unmapped_call_types_and_sections():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {"type": "local", "supported_call_types": ["acreate_batch", "afile_content"]},
                "callbacks": ["otel"],
                "drop_params": True,
            },
            "general_settings": {"master_key": "sk-1234", "database_url": "postgres://x"},
            "router_settings": {"num_retries": 2},
            "guardrails": [{"guardrail_name": "g"}],
        }
    )
    assert c.config["cache"]["call_types"] == []
    assert warned(c, f"{CP}.supported_call_types", "acreate_batch", "afile_content")
    assert warned(c, f"{CP}.supported_call_types", "empty")
    for key in (
        "litellm_settings.callbacks",
        "litellm_settings.drop_params",
        "general_settings.master_key",
        "general_settings.database_url",
        "router_settings.num_retries",
        "guardrails",
    ):
        assert warned(c, key), key
    assert not warned(c, "api_keys")  # no route carries a fixed key here


def test_non_openai_providers_warn_and_keep_a_name_only_route():
    c = convert(
        {
            "model_list": [
                {"model_name": "claude", "litellm_params": {"model": "claude-3-5-sonnet-20240620"}},
                {"model_name": "gemini-pro", "litellm_params": {"model": "vertex_ai/gemini-1.5-pro"}},
                {"model_name": "custom", "litellm_params": {"model": "my-model", "custom_llm_provider": "cohere"}},
            ]
        }
    )
    assert c.config["models"] == [{"name": "claude"}, {"name": "gemini-pro"}, {"name": "custom"}]
    assert warned(c, "model_list[0] (claude)", "anthropic")
    assert warned(c, "model_list[1] (gemini-pro)", "vertex_ai")
    assert warned(c, "model_list[2] (custom)", "cohere")


def test_openai_compatible_providers_and_wildcards():
    c = convert(
        {
            "model_list": [
                {
                    "model_name": "*",
                    "litellm_params": {
                        "model": "openai/*",
                        "api_base": "http://gateway:4000/v1",
                        "api_key": "os.environ/GATEWAY_KEY",
                    },
                },
                {"model_name": "llama3", "litellm_params": {"model": "ollama_chat/llama3"}},
                {"model_name": "mixtral", "litellm_params": {"model": "together_ai/mistralai/Mixtral-8x7B"}},
                {"model_name": "groq/*", "litellm_params": {"model": "groq/*"}},
            ]
        }
    )
    assert c.config["upstream"] == {"base_url": "http://gateway:4000/v1", "api_key": "${GATEWAY_KEY}"}
    assert c.config["models"] == [
        {"name": "llama3", "base_url": "http://localhost:11434/v1"},
        {"name": "mixtral", "base_url": "https://api.together.xyz/v1", "upstream_model": "mistralai/Mixtral-8x7B"},
    ]
    assert warned(c, "model_list[1] (llama3)", "Ollama")
    assert warned(c, "model_list[3] (groq/*)", "wildcard")
    # the catch-all's key would otherwise be sent to Together
    assert warned(c, "models mixtral", "no api_key", "upstream.api_key")


def test_duplicate_model_name_keeps_the_first():
    c = convert(
        {
            "model_list": [
                {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://a/v1"}},
                {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://b/v1"}},
                {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://c/v1"}},
            ]
        }
    )
    assert c.config["models"] == [{"name": "gpt-4o", "base_url": "http://a/v1"}]
    assert warned(c, "model_list[1] (gpt-4o)", "kept model_list[0]")
    assert warned(c, "model_list[2] (gpt-4o)", "kept model_list[0]")


# --- malformed input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "mapping at the top level"),
        ("model_list: [\n", "not valid YAML"),
        ("", "empty"),
        ("model_list: {model_name: x}\n", "model_list must be a list"),
        ("model_list: [{litellm_params: {model: gpt-4o}}]\n", "model_list[0].model_name"),
        ("model_list: [{model_name: x, litellm_params: {api_key: k}}]\n", "litellm_params.model"),
        ("model_list: [{model_name: x, litellm_params: {model: m, api_key: [1]}}]\n", "api_key must be a string"),
        ("litellm_settings: [cache]\n", "litellm_settings must be a mapping"),
        ("litellm_settings: {cache: true, cache_params: [redis]}\n", "cache_params must be a mapping"),
        ("litellm_settings: {cache: true, cache_params: {type: s3}}\n", "s3_bucket_name is required"),
        (
            "litellm_settings: {cache: true, cache_params: {type: azure-blob, azure_account_url: u}}\n",
            "azure_blob_container is required",
        ),
        (
            "litellm_settings: {cache: true, cache_params: {type: redis, redis_startup_nodes: [{port: 1}]}}\n",
            "redis_startup_nodes[0]",
        ),
        ("router_settings: {caching_groups: [[a, 1]]}\n", "caching_groups[0]"),
        (
            "litellm_settings: {cache: true, cache_params: {type: local, supported_call_types: {a: 1}}}\n",
            "supported_call_types must be a list",
        ),
    ],
)
def test_malformed_input_raises(tmp_path, text, message):
    path = tmp_path / "litellm.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LiteLLMImportError) as info:
        convert_file(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unreadable_input_raises(tmp_path):
    with pytest.raises(LiteLLMImportError, match="cannot read"):
        convert_file(tmp_path / "missing.yaml")
    with pytest.raises(LiteLLMImportError, match="cannot read"):
        convert_file(tmp_path)  # a directory
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(LiteLLMImportError, match="cannot read"):
        convert_file(binary)


@pytest.mark.parametrize("value", [None, [], "model_list: []", 3])
def test_convert_refuses_non_mappings(value: Any):
    with pytest.raises(LiteLLMImportError, match="mapping"):
        convert(value)  # type: ignore[arg-type]


def test_cli_prints_config_and_warnings(tmp_path):
    result = run_cli("import-litellm", str(DATA / "router.yaml"))
    assert result.returncode == 0, result.stderr
    assert "models:" in result.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("- not a mapping\n")
    failed = run_cli("import-litellm", str(broken))
    assert failed.returncode == 2 and failed.stderr


def test_new_call_types_and_litellm_settings_caching_groups_are_mapped():
    c = convert(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {
                    "type": "local",
                    "supported_call_types": [
                        "aresponses",
                        "arerank",
                        "anthropic_messages",
                        "aimage_generation",
                        "aspeech",
                        "amoderation",
                    ],
                },
                "caching_groups": [["gpt-4o", "gpt-4o-2024-08-06"]],
            },
            "router_settings": {"caching_groups": [["claude-a", "claude-b"], ["gpt-4o", "x"]]},
        }
    )
    assert c.config["cache"]["call_types"] == ["responses", "messages", "images", "speech", "rerank", "moderations"]
    assert c.config["cache"]["caching_groups"] == [["gpt-4o", "gpt-4o-2024-08-06"], ["claude-a", "claude-b"], ["x"]]
    assert not warned(c, "litellm_settings.caching_groups", "not mapped")
    assert warned(c, "router_settings.caching_groups[1]", "gpt-4o", "already in group 0")
