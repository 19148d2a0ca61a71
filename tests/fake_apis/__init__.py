"""The fake upstream's parts beyond its ASGI app (tests/fake_upstream.py).

``common`` holds what every API's generator shares (reply types, the id counter, the
deterministic text); ``responses`` renders OpenAI's Responses API and ``messages``
Anthropic's Messages API. Each generator is a pure function of the request, apart from
the ids it draws, so the fake's app only routes, records and delivers.
"""
