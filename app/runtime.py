"""Everything one serving process holds, built from the settings, and its lifecycle: one
chain of tiers, one upstream transport, one pipeline, the metrics, the semantic cache."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from app import tracing
from app.background import Background
from app.config import Settings, redact_url, tier_name
from app.encryption import Cipher
from app.metrics import Metrics
from app.passthrough import Passthrough
from app.pipeline import Pipeline
from app.routing import Routing
from app.tiers.chain import Chain
from app.tiers.guarded import GuardedTier
from app.tiers.registry import build_tier
from app.upstream import Upstream, create_transport

log = logging.getLogger("llmcache")


def build_chain(settings: Settings, metrics: Metrics, background: Background) -> Chain:
    tiers: list[GuardedTier[Any]] = [GuardedTier(build_tier(t), t, metrics) for t in settings.cache.tiers]
    encryption = settings.cache.encryption
    cipher = None if encryption is None else Cipher(encryption.secrets())
    stale = settings.cache.stale
    return Chain(tiers, background, cipher, keep_s=max(stale.if_error_s, stale.while_revalidate_s))


class Runtime:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.traced = tracing.start(settings.tracing)  # first: what is built next looks whether it traces
        routing = Routing(settings)
        self.metrics = Metrics(routing.known_models())
        self.background = Background()
        self.chain = build_chain(settings, self.metrics, self.background)
        self.upstream = Upstream(transport or create_transport(settings.upstream), settings.upstream)
        self.semantic = None
        if settings.cache.semantic is not None:
            from app.semantic.factory import build_semantic

            self.semantic = build_semantic(
                settings.cache.semantic, self.upstream, routing, self.chain, settings.cache.ttl_s, self.metrics
            )
        self.pipeline = Pipeline(settings, self.chain, self.upstream, self.metrics, self.semantic)
        self.handle = tracing.traced(self.pipeline.handle)
        self.passthrough = Passthrough(self.upstream, routing, settings.server.max_body_bytes)

    def start(self) -> None:
        self.chain.start()
        self.metrics.start()
        names = ", ".join(tier_name(t) for t in self.settings.cache.tiers)
        log.info("llmcache ready: tiers [%s], upstream %s", names, redact_url(self.settings.upstream.base_url))
        if self.chain.cipher is not None:
            log.info(
                "encryption at rest: AES-256-GCM, %d key(s), the first for new writes", self.chain.cipher.key_count
            )

    async def close(self) -> None:
        await self.chain.close()
        if self.semantic is not None:
            await self.semantic.close()
        await self.metrics.stop()
        await self.upstream.close()
        if self.traced:
            await tracing.stop()  # last: the spans of the writes drained above are exported too
