"""model_list → models: one route per model name, for the providers llmcache can forward to.

One route per `model_name`: `name` = model_name, `base_url` = litellm_params.api_base,
`api_key` = litellm_params.api_key, `upstream_model` = litellm_params.model with its
provider prefix removed (`openai/gpt-4o` → `gpt-4o`; omitted when equal to the name).
Providers that speak the OpenAI API (`openai`, `text-completion-openai`,
`custom_openai`, `groq`, `together_ai`, `hosted_vllm`, `mistral`, `deepseek`,
`openrouter`, ... see vocabulary.OPENAI_COMPATIBLE) are forwarded directly; when api_base is
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
"""

from __future__ import annotations

from typing import Any

from app.config import kind_of
from app.litellm_import.base import ConverterBase, mapping
from app.litellm_import.result import LiteLLMImportError
from app.litellm_import.vocabulary import BARE_NON_OPENAI, OLLAMA, OLLAMA_DEFAULT_BASE, OPENAI_COMPATIBLE


class ModelsMixin(ConverterBase):
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
            params = mapping(deployment.get("litellm_params"), f"{where}.litellm_params")
            for key in deployment:
                if key not in ("model_name", "litellm_params"):
                    self.warn(f"{where}.{key}: not mapped (llmcache keeps no model metadata)")
            if name in seen:
                self.warn(
                    f"{where}: another deployment of {name!r} (load balancing); llmcache sends each "
                    f"model name to one upstream: kept model_list[{seen[name]}], dropped this one"
                )
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
            self.warn(
                "models " + ", ".join(keyless) + ": no api_key, so llmcache sends upstream.api_key (from "
                "the '*' deployment) to their provider; give each its own `api_key: ${...}`"
            )
        elif keyless:
            self.warn(
                "models " + ", ".join(keyless) + ": no api_key, so llmcache forwards each caller's own "
                "Authorization header to the provider, where LiteLLM used its provider key from the "
                "environment (e.g. OPENAI_API_KEY); add `api_key: ${OPENAI_API_KEY}` (or the provider's) "
                "if callers do not hold provider keys"
            )
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
            self.warn(
                f"{where}: litellm_params {', '.join(extra)} not mapped (llmcache forwards requests "
                "as sent: no rate limits, retries, timeouts or extra params per model)"
            )

        upstream_model: str | None
        provider, upstream_model = split_provider(model, params.get("custom_llm_provider"))
        if "*" in name and name != "*":
            self.warn(
                f"{where}: wildcard model_name {name!r} cannot be expressed (llmcache routes exact "
                "names); requests for such models go to upstream.base_url unchanged"
            )
            return None
        if provider in OLLAMA:
            base = (api_base or OLLAMA_DEFAULT_BASE).rstrip("/")
            self.warn(f"{where}: {provider}/ is served through Ollama's OpenAI-compatible endpoint {base}/v1")
            return self._route(name, base + "/v1", api_key, upstream_model, forwarded=False)
        if provider not in OPENAI_COMPATIBLE:
            self.warn(
                f"{where}: provider {provider!r} ({model}) does not speak the OpenAI API and llmcache "
                "cannot translate; route kept by name only, so its requests go unchanged to "
                "upstream.base_url (point that at an OpenAI-compatible gateway serving "
                f"{name!r}, e.g. LiteLLM itself)"
            )
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
    def _route(
        name: str, base_url: str | None, api_key: str | None, upstream_model: str | None, *, forwarded: bool
    ) -> dict[str, Any]:
        route: dict[str, Any] = {"name": name}
        if base_url is not None:
            route["base_url"] = base_url
        if api_key is not None:
            route["api_key"] = api_key
        if upstream_model is not None and upstream_model != name:
            route["upstream_model"] = upstream_model
        route["_forwarded"] = forwarded
        return route


def split_provider(model: str, custom_provider: Any) -> tuple[str, str]:
    """(provider, model name as the provider knows it), the way LiteLLM reads `model`."""
    if isinstance(custom_provider, str) and custom_provider:
        prefix = custom_provider + "/"
        return custom_provider, model[len(prefix) :] if model.startswith(prefix) else model
    if "/" in model:
        provider, rest = model.split("/", 1)
        return provider, rest
    for prefix, provider in BARE_NON_OPENAI:
        if model.startswith(prefix):
            return provider, model
    return "openai", model
