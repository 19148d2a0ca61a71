"""Which upstream serves a model, and which models share cache entries.

A route's `name` may be a glob (`claude-*`): the first route whose name matches wins, so
one llmcache fronts several providers. What a model resolves to is remembered (bounded),
so matching costs one dict lookup per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from app.config import Settings

MAX_RESOLVED = 4096


@dataclass(slots=True, frozen=True)
class Route:
    base_url: str
    api_key: str | None
    upstream_model: str | None


class Routing:
    def __init__(self, settings: Settings) -> None:
        default = Route(settings.upstream.base_url.rstrip("/"), settings.upstream.api_key, None)
        self.default = default
        self._routes = [
            (
                m.name,
                Route(
                    (m.base_url or default.base_url).rstrip("/"),
                    m.api_key if m.api_key is not None else default.api_key,
                    m.upstream_model,
                ),
            )
            for m in settings.models
        ]
        self._resolved: dict[str, Route] = {}
        self._groups = {model: "+".join(group) for group in settings.cache.caching_groups for model in group}

    def route(self, model: Any) -> Route:
        if not isinstance(model, str):
            return self.default
        route = self._resolved.get(model)
        if route is None:
            route = next((r for name, r in self._routes if fnmatchcase(model, name)), self.default)
            if len(self._resolved) < MAX_RESOLVED:  # clients choose model names: bounded
                self._resolved[model] = route
        return route

    def group_of(self, model: Any) -> str | None:
        """The name of the caching group `model` shares entries with (None: not grouped)."""
        return self._groups.get(model) if isinstance(model, str) else None

    def known_models(self) -> list[str]:
        """Every model name the configuration names (routes that are not globs, caching groups)."""
        return [name for name, _ in self._routes if not any(c in name for c in "*?[")] + list(self._groups)
