"""A short run of the route fuzzer (bench/fuzz_routes.py) against a served proxy.

Seeded, so every run sends the same requests: about 200 of them at every cached route,
with mutated JSON, random multipart bodies and random headers (tags, stale windows,
trace context, the headers the fuzzer's tenant policies match by), and admin documents
for PUT /cache/entries, POST /cache/explain and POST /cache/invalidate. Some keys are
checked against POST /cache/explain, and every x-cache-policy against the policy the
request matches. Any 5xx, hang, request
without an answer, error the proxy writes that is not OpenAI-shaped, 2xx without
`x-cache-status`, or ERROR the proxy logs fails the test with the requests that caused
it. The long run is `python -m bench.fuzz_routes --minutes 3`.
"""

from __future__ import annotations

import logging

import pytest

from bench import fuzz_routes
from tests.conftest import ADMIN_TOKEN

MAX_BODY = 256 * 1024


class _Errors(logging.Handler):
    """ERROR records from any thread, each once, grouped by what they say."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: set[int] = set()
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if id(record) in self.seen:  # reached through two loggers
            return
        self.seen.add(id(record))
        text = f"{record.name} {record.levelname}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if "fake_upstream.py" in text and "/app/" not in text:
            return  # the fake upstream runs in this process too: its failures are upstream-5xx findings
        self.counts[text] = self.counts.get(text, 0) + 1

    def entries(self) -> list[str]:
        return [f"(x{count}) {text}" for text, count in self.counts.items()]


# The fake upstream (starlette's form parser) leaves a file part's spooled temporary file
# unclosed when a form has no closing boundary; the proxy itself parses forms in memory.
@pytest.mark.filterwarnings("ignore:Exception ignored in.*SpooledTemporaryFile:pytest.PytestUnraisableExceptionWarning")
def test_fuzzed_requests_get_answers_not_crashes(serve, fake):
    proxy = serve(server={"max_body_bytes": MAX_BODY}, policies=fuzz_routes.FUZZ_POLICIES, cache=fuzz_routes.FUZZ_CACHE)
    # After serve(): uvicorn's logging setup replaces the handlers of its loggers.
    errors = _Errors()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "")]
    for logger in loggers:
        logger.addHandler(errors)
    try:
        report = fuzz_routes.run(
            proxy.root,
            seed=11,
            requests=200,
            concurrency=1,
            small=True,
            max_body=MAX_BODY,
            max_hangs=1,
            admin_token=ADMIN_TOKEN,
            explain_rate=0.2,
        )
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
    report.log_errors = errors.entries()
    assert not report.failed, report.render("route fuzzer, seed 11")
    assert report.sent >= 190, report.render("route fuzzer, seed 11")
