"""cache_params of the semantic cache types → cache.semantic.

redis-semantic: the redis tier (see tiers), plus semantic {type: redis,
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
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from app.litellm_import.base import ConverterBase
from app.litellm_import.models import split_provider
from app.litellm_import.vocabulary import CP, LITELLM_EMBEDDING_DEFAULT, OPENAI_COMPATIBLE


class SemanticMixin(ConverterBase):
    def redis_semantic(self, params: dict[str, Any], used: set[str], tier: dict[str, Any]) -> dict[str, Any]:
        """cache.semantic for redis-semantic, its index on the server of the redis `tier`."""
        semantic = self.semantic(params, used, "redis")
        semantic["redis"] = {"url": self.redis_url(tier)}
        if params.get("redis_semantic_cache_index_name") is not None:
            used.add("redis_semantic_cache_index_name")
            self.warn(
                f"{CP}.redis_semantic_cache_index_name: {params['redis_semantic_cache_index_name']!r} "
                "not reused (it holds LiteLLM's entries in LiteLLM's schema, which llmcache cannot "
                "read); llmcache keeps its own index 'llmcache-semantic' (cache.semantic.redis.index)"
            )
        return semantic

    def qdrant_semantic(self, params: dict[str, Any], used: set[str]) -> dict[str, Any]:
        """cache.semantic for qdrant-semantic."""
        semantic = self.semantic(params, used, "qdrant")
        used.update({"qdrant_api_base", "qdrant_api_key", "qdrant_collection_name"})
        url = params.get("qdrant_api_base")
        if url is None:
            url = "${QDRANT_URL}"
            self.warn(
                f"{CP}.qdrant_api_base: not set, LiteLLM read QDRANT_URL (or QDRANT_API_BASE) from "
                "its environment; emitted url: ${QDRANT_URL}"
            )
        qdrant: dict[str, Any] = {"url": url}
        if params.get("qdrant_api_key") is not None:
            qdrant["api_key"] = params["qdrant_api_key"]
        semantic["qdrant"] = qdrant
        if params.get("qdrant_collection_name") is not None:
            self.warn(
                f"{CP}.qdrant_collection_name: {params['qdrant_collection_name']!r} not reused (it "
                "holds LiteLLM's points, which llmcache cannot read); llmcache keeps its own "
                "collection 'llmcache' (cache.semantic.qdrant.collection)"
            )
        return semantic

    def semantic(self, params: dict[str, Any], used: set[str], kind: str) -> dict[str, Any]:
        """What both semantic types share: the threshold and the embedding model."""
        used.add("similarity_threshold")
        semantic: dict[str, Any] = {"type": kind}
        threshold = params.get("similarity_threshold")
        if threshold is None:
            self.warn(
                f"{CP}.similarity_threshold: not set (LiteLLM requires it for {kind}-semantic); "
                "llmcache's default 0.9 applies"
            )
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
            timeout = self.number(params["semantic_cache_embedding_timeout"], f"{CP}.semantic_cache_embedding_timeout")
            if timeout is not None:
                embedding["timeout_s"] = timeout
        semantic["embedding"] = embedding
        return semantic

    def embedding_model(self, model: str, where: str) -> str:
        if model in self.model_names:
            return model  # a model_list name: llmcache routes it the same way
        provider, name = split_provider(model, None)
        if provider in OPENAI_COMPATIBLE:
            return name
        self.warn(
            f"{where}: {model!r} is a {provider} model; llmcache embeds through upstream.base_url's "
            "/v1/embeddings with the name as given -- add a model route for it or use "
            "embedding: {local: all-MiniLM-L6-v2}"
        )
        return model

    def redis_url(self, tier: dict[str, Any]) -> str:
        """The semantic index's Redis: the same server as the exact redis tier."""
        if "url" in tier:
            url: str = tier["url"]
            return url
        if "startup_nodes" in tier:
            node = tier["startup_nodes"][0]
            self.warn(
                f"{CP}.redis_startup_nodes: the semantic index needs one RediSearch server, not a "
                f"cluster; emitted redis://{node['host']}:{node.get('port', 6379)} -- check it"
            )
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
