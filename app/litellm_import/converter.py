"""The conversion of one parsed LiteLLM config, composed from its parts.

Each part is a mixin over `ConverterBase` (the warnings, and how values are read):
`ModelsMixin` (model_list), `CacheMixin` (the cache, with `TiersMixin` and
`SemanticMixin`) and `SettingsMixin` (everything else). `Converter.run` calls them in
the order their warnings are listed: models, cache, then the other settings.
"""

from __future__ import annotations

from typing import Any

from app.litellm_import.base import mapping
from app.litellm_import.cache import CacheMixin
from app.litellm_import.models import ModelsMixin
from app.litellm_import.result import Conversion
from app.litellm_import.settings import SettingsMixin


class Converter(ModelsMixin, CacheMixin, SettingsMixin):
    """One use only: `Converter().run(data)`."""

    def run(self, data: dict[str, Any]) -> Conversion:
        config: dict[str, Any] = {}
        upstream: dict[str, Any] = {}
        litellm_settings = mapping(data.get("litellm_settings"), "litellm_settings")
        router_settings = mapping(data.get("router_settings"), "router_settings")
        general_settings = mapping(data.get("general_settings"), "general_settings")

        models = self.models(data.get("model_list"), upstream)  # before the cache: it knows the model names
        cache = self.cache(litellm_settings, router_settings)
        self.settings(data, litellm_settings, router_settings, general_settings, upstream)

        if upstream:
            config["upstream"] = upstream
        if models:
            config["models"] = models
        config["cache"] = cache
        return Conversion(config=config, warnings=self.warnings)
