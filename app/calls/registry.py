"""Every cached call type, one line each: the routes, `cache.call_types` and the metric
label values all come from here. Adding a call type is one module in `app/calls/` and one
line below (and its name in `types.CallType`)."""

from __future__ import annotations

from app.calls.audio import Transcriptions, Translations
from app.calls.base import Handler
from app.calls.completions import ChatCompletions, TextCompletions
from app.calls.embeddings import Embeddings
from app.calls.images import Images
from app.calls.messages import Messages
from app.calls.moderations import Moderations
from app.calls.rerank import Rerank
from app.calls.responses import Responses
from app.calls.speech import Speech
from app.types import CallType

HANDLERS: tuple[Handler, ...] = (
    ChatCompletions(),
    TextCompletions(),
    Embeddings(),
    Transcriptions(),
    Translations(),
    Responses(),
    Messages(),
    Images(),
    Speech(),
    Rerank(),
    Moderations(),
)

BY_CALL_TYPE: dict[CallType, Handler] = {handler.call_type: handler for handler in HANDLERS}
# Each route is served with and without its /v1 prefix.
ROUTES: dict[str, Handler] = {
    route: handler for handler in HANDLERS for path in handler.paths for route in (path, path.removeprefix("/v1"))
}

missing = set(CallType) - set(BY_CALL_TYPE)
assert not missing, f"call types without a handler: {sorted(missing)}"
