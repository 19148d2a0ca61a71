"""Single flight: followers of a flight get everything its leader got, from the first chunk;
the last consumer out stops the upstream call; a landed flight takes no new followers."""

from __future__ import annotations

import asyncio

import pytest

from app.coalesce import Flight, Flights, Outcome
from app.errors import ProxyError


async def collect(flight: Flight) -> list[bytes]:
    return [chunk async for chunk in flight.follow()]


async def test_a_follower_joining_mid_stream_gets_every_chunk_from_the_first() -> None:
    flights = Flights()
    flight = flights.lead("k", stream=True, include_usage=False)
    flight.started(200, [(b"content-type", b"text/event-stream")])
    leader = asyncio.create_task(collect(flight))
    flight.push(b"one ")
    flight.push(b"two ")
    follower_flight = flights.join("k")
    assert follower_flight is flight and flight.consumers == 2
    follower = asyncio.create_task(collect(follower_flight))
    flight.push(b"three ")
    flight.push(b"four")
    flight.end()
    flight.finish(Outcome(200, [], b"one two three four", complete=True))
    leading, following = await asyncio.wait_for(asyncio.gather(leader, follower), 5)
    assert b"".join(leading) == b"".join(following) == b"one two three four"
    assert following[0].startswith(b"one ")  # the chunks sent before it joined came first


async def test_chunks_that_piled_up_go_out_in_one_write() -> None:
    flight = Flights().lead("k", stream=True, include_usage=False)
    for chunk in (b"a", b"b", b"c"):
        flight.push(chunk)
    flight.end()
    assert await collect(flight) == [b"abc"]


async def test_a_follower_after_the_end_gets_the_whole_body_and_the_outcome() -> None:
    flights = Flights()
    flight = flights.lead("k", stream=False, include_usage=False)
    flight.started(200, [])
    flight.push(b"{}")
    outcome = Outcome(200, [], b"{}", complete=True)
    flight.finish(outcome)
    late = flights.join("k")
    assert late is flight and late.finished
    assert await collect(late) == [b"{}"]
    await asyncio.wait_for(late.wait_finished(), 1)
    assert late.outcome is outcome and late.error is None


async def test_followers_wait_for_the_start_or_for_an_error() -> None:
    flight = Flights().lead("k", stream=True, include_usage=False)
    waiting = asyncio.create_task(flight.wait_started())
    await asyncio.sleep(0)  # one loop turn: it parks on the flight
    assert not waiting.done()
    flight.started(200, [])
    await asyncio.wait_for(waiting, 1)

    failed = Flights().lead("k", stream=True, include_usage=False)
    waiting = asyncio.create_task(failed.wait_started())
    await asyncio.sleep(0)
    error = ProxyError(502, "upstream unreachable", "upstream_error", "upstream_unreachable")
    failed.finish(error=error)
    await asyncio.wait_for(waiting, 1)
    assert failed.status is None and failed.error is error
    assert await collect(failed) == []


async def test_a_cut_stream_stays_cut() -> None:
    flight = Flights().lead("k", stream=True, include_usage=False)
    flight.push(b"partial")
    flight.end(cut=True)
    flight.finish(Outcome(200, [], b"partial"))
    assert flight.cut
    assert await collect(flight) == [b"partial"]


async def producer(flight: Flight) -> asyncio.Task[None]:
    """An upstream call that runs until it is cancelled."""
    started = asyncio.Event()

    async def call() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(call())
    flight.producer = task
    await started.wait()
    return task


async def test_the_last_consumer_to_leave_cancels_the_producer() -> None:
    flights = Flights()
    flight = flights.lead("k", stream=True, include_usage=False)
    task = await producer(flight)
    assert flights.join("k") is flight
    flight.leave()
    assert task.cancelling() == 0  # one consumer is still there
    flight.leave()
    assert task.cancelling() == 1
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)


async def test_leaving_after_the_end_cancels_nothing() -> None:
    flight = Flights().lead("k", stream=True, include_usage=False)
    task = await producer(flight)
    flight.end()  # the producer is storing what it received: let it
    flight.leave()
    assert task.cancelling() == 0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_land_removes_only_the_same_flight() -> None:
    flights = Flights()
    first = flights.lead("k", stream=False, include_usage=False)
    flights.land(first)
    assert flights.join("k") is None

    old = flights.lead("k", stream=False, include_usage=False)
    new = flights.lead("k", stream=False, include_usage=False)  # a later flight of the same key
    flights.land(old)
    assert flights.join("k") is new
    flights.land(new)
    assert flights.join("k") is None
    other = flights.lead("other", stream=False, include_usage=False)
    flights.land(new)  # landing twice is harmless
    assert flights.join("other") is other
