"""Which upstream serves a model, and which models share cache entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.config import Settings


@dataclass(slots=True, frozen=True)
class Route:
    base_url: str
    api_key: str | None
    upstream_model: str | None


class Routing:
    def __init__(self, settings: Settings) -> None:
        default = Route(settings.upstream.base_url.rstrip("/"), settings.upstream.api_key, None)
        self.default = default
        self._routes = {
            m.name: Route(
                (m.base_url or default.base_url).rstrip("/"),
                m.api_key if m.api_key is not None else default.api_key,
                m.upstream_model,
            )
            for m in settings.models
        }
        self._groups = {model: "+".join(group) for group in settings.cache.caching_groups for model in group}

    def route(self, model: Any) -> Route:
        if isinstance(model, str):
            return self._routes.get(model, self.default)
        return self.default

    def group_of(self, model: Any) -> str | None:
        """The name of the caching group `model` shares entries with (None: not grouped)."""
        return self._groups.get(model) if isinstance(model, str) else None

    def known_models(self) -> list[str]:
        """Every model name the configuration names (routes and caching groups)."""
        return [*self._routes, *self._groups]
