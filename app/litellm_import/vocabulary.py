"""LiteLLM's vocabulary, as data: providers, call types, cache_params keys and cache types.

Spellings follow LiteLLM's own source: the keywords of its `Cache` class, its caching
types, and its proxy server's defaults.
"""

from __future__ import annotations

# Providers whose API is OpenAI's, and LiteLLM's default endpoint for each (None: the
# deployment must give api_base; `openai` & co. fall back to upstream.base_url).
# From LiteLLM's `litellm.constants.openai_compatible_providers` and
# `litellm.litellm_core_utils.get_llm_provider_logic`.
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

# LiteLLM's call types (supported_call_types) → ours (cache.call_types).
CALL_TYPES = {
    "completion": "chat_completions",
    "acompletion": "chat_completions",
    "text_completion": "completions",
    "atext_completion": "completions",
    "embedding": "embeddings",
    "aembedding": "embeddings",
    "transcription": "transcriptions",
    "atranscription": "transcriptions",
    "responses": "responses",
    "aresponses": "responses",
    "anthropic_messages": "messages",
    "image_generation": "images",
    "aimage_generation": "images",
    "image_edit": "images",
    "aimage_edit": "images",
    "speech": "speech",
    "aspeech": "speech",
    "rerank": "rerank",
    "arerank": "rerank",
    "moderation": "moderations",
    "amoderation": "moderations",
}
OUR_CALL_TYPE_ORDER = (
    "chat_completions",
    "completions",
    "embeddings",
    "transcriptions",
    "translations",
    "responses",
    "messages",
    "images",
    "speech",
    "rerank",
    "moderations",
)

# Every keyword of LiteLLM's Cache.__init__ (plus the Redis client kwargs we map), so that
# a key meant for another cache type is told apart from an unknown key.
LITELLM_CACHE_KEYS = {
    "type",
    "mode",
    "host",
    "port",
    "password",
    "namespace",
    "ttl",
    "default_in_memory_ttl",
    "default_in_redis_ttl",
    "similarity_threshold",
    "supported_call_types",
    "azure_account_url",
    "azure_blob_container",
    "s3_bucket_name",
    "s3_region_name",
    "s3_api_version",
    "s3_use_ssl",
    "s3_verify",
    "s3_endpoint_url",
    "s3_aws_access_key_id",
    "s3_aws_secret_access_key",
    "s3_aws_session_token",
    "s3_config",
    "s3_path",
    "gcs_bucket_name",
    "gcs_path_service_account",
    "gcs_path",
    "redis_semantic_cache_embedding_model",
    "redis_semantic_cache_index_name",
    "valkey_semantic_cache_embedding_model",
    "valkey_semantic_cache_index_name",
    "redis_flush_size",
    "redis_startup_nodes",
    "disk_cache_dir",
    "qdrant_api_base",
    "qdrant_api_key",
    "qdrant_collection_name",
    "qdrant_quantization_config",
    "qdrant_semantic_cache_embedding_model",
    "qdrant_semantic_cache_vector_size",
    "semantic_cache_embedding_max_input_tokens",
    "semantic_cache_embedding_timeout",
    "semantic_cache_scope",
    "gcp_service_account",
    "gcp_ssl_ca_certs",
    # redis.Redis kwargs LiteLLM passes through
    "url",
    "redis_url",
    "username",
    "db",
    "ssl",
    "max_connections",
    "socket_timeout",
}
REDIS_TYPES = {"redis", "redis-semantic"}
KNOWN_TYPES = {"local", "redis", "redis-semantic", "qdrant-semantic", "s3", "gcs", "azure-blob", "disk"}
LITELLM_EMBEDDING_DEFAULT = "text-embedding-ada-002"

ENV_PREFIX = "os.environ/"  # LiteLLM's spelling of a value read from the environment
CP = "litellm_settings.cache_params"  # where the cache settings are, for warnings

# cache_params keys the redis tier reads (and, with redis_flush_size, that only Redis types take).
REDIS_PARAMS = frozenset(
    (
        "host",
        "port",
        "password",
        "username",
        "db",
        "ssl",
        "url",
        "redis_url",
        "redis_startup_nodes",
        "max_connections",
        "socket_timeout",
    )
)
