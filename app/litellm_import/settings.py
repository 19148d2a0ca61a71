"""The rest of a LiteLLM config: the one setting carried over, and a warning for each other.

litellm_settings.request_timeout → upstream.timeout_s.

Everything else (general_settings.master_key, callbacks, router strategy, guardrails,
...) is named in a warning, saying why it has no llmcache equivalent.
"""

from __future__ import annotations

from typing import Any

from app.litellm_import.base import ConverterBase, mapping


class SettingsMixin(ConverterBase):
    def settings(
        self,
        data: dict[str, Any],
        litellm_settings: dict[str, Any],
        router_settings: dict[str, Any],
        general_settings: dict[str, Any],
        upstream: dict[str, Any],
    ) -> None:
        """Map or warn about every key that is not the model list or the cache."""
        for key, value in litellm_settings.items():
            if key in ("cache", "cache_params", "caching_groups"):  # the cache's (cache.py)
                continue
            if key == "request_timeout":
                timeout = self.number(self.secret(value, f"litellm_settings.{key}"), f"litellm_settings.{key}")
                if timeout is not None:
                    upstream["timeout_s"] = timeout
                continue
            self.warn(f"litellm_settings.{key}: not mapped ({_why_litellm_setting(key)})")
        for key in router_settings:
            if key != "caching_groups":
                self.warn(
                    f"router_settings.{key}: not mapped (llmcache does no load balancing, "
                    "retries or fallbacks; one upstream per model name)"
                )
        for key in general_settings:
            why = _why_general_setting(key)
            if key == "master_key" and self.fixed_keys:
                why += "; the models' api_keys are then spent for anyone who reaches llmcache: keep it private"
            self.warn(f"general_settings.{key}: not mapped ({why})")
        if "environment_variables" in data:
            names = ", ".join(str(k) for k in mapping(data["environment_variables"], "environment_variables"))
            self.warn(
                f"environment_variables: not copied (export {names or 'them'} where llmcache runs; "
                "${VAR} references are read from llmcache's own environment)"
            )
        for key in data:
            if key not in (
                "model_list",
                "litellm_settings",
                "router_settings",
                "general_settings",
                "environment_variables",
            ):
                self.warn(f"{key}: not mapped (no llmcache equivalent)")


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
        return (
            "llmcache does not authenticate callers; it forwards their credential upstream and scopes "
            "entries by it. admin.token protects only the admin API -- set it separately"
        )
    if key in ("database_url", "store_model_in_db"):
        return "llmcache keeps no database"
    return "no llmcache equivalent"
