"""The JetStream broker and its Bridge: what only the real transport has.

Cancellation crossing the thread boundary, connection state while a server stops and comes
back, authentication passed through to nats-py, clear errors for unreachable servers, a clean
end (no thread, no asyncio complaint left behind), and the hot path's wire formats. Real clock
throughout, every wait bounded by ``trio.fail_after``; servers of their own where a test stops
one or needs credentials.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import subprocess
import sys
import threading
import time
from contextlib import aclosing
from pathlib import Path

import pytest
import trio
import trio.testing

from actorq import NotConnected, NotFound, PublishFailed, start_server
from actorq._embedded_base import free_ports
from actorq.actors._bridge import Bridge, open_bridge
from actorq.broker import (
    MSG_ID,
    CaughtUp,
    ConnectionState,
    ConsumerConfig,
    KvConfig,
    KvEntry,
    KvOperation,
    Message,
    PubAck,
    StreamConfig,
    open_broker,
)
from actorq.broker._jetstream import JetStreamBroker, open_jetstream_broker
from actorq.broker._jetstream_codec import (
    EncodeError,
    header_block,
    parse_delivery,
    parse_puback,
    pub_command,
)
from actorq.broker._jetstream_inbox import parse_headers

pytestmark = pytest.mark.integration

FAST_RECONNECT = {"reconnect_time_wait": 0.1, "max_reconnect_attempts": -1}


async def work_queue(broker: JetStreamBroker, namespace: str) -> tuple[str, str]:
    stream, prefix = namespace.upper(), namespace
    await broker.ensure_stream(StreamConfig(name=stream, subjects=(f"{prefix}.>",)))
    await broker.ensure_consumer(stream, ConsumerConfig(name="workers", ack_wait=30.0))
    return stream, prefix


async def wait_idle(broker: JetStreamBroker) -> None:
    """Until no call is in flight on either side of the Bridge."""
    while True:
        stats = broker.bridge.statistics()
        if stats.loop_tasks == 0 and stats.calls_waiting == 0:
            return
        await trio.sleep(0.01)


# --- cancellation crosses the thread boundary -------------------------------------------------


async def test_cancelling_a_caller_cancels_the_asyncio_side(nats_url: str) -> None:
    cancelled = trio.Event()
    async with open_bridge(nats_url) as bridge:

        async def sleep_long() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                bridge.loop_side.post(cancelled.set)
                raise

        with trio.fail_after(5):
            started = trio.current_time()
            with trio.move_on_after(0.2):
                await bridge.call(sleep_long)
            assert trio.current_time() - started < 1.0
            await cancelled.wait()
            while bridge.statistics().loop_tasks:  # the task ends just after it reports
                await trio.sleep(0.01)


async def test_a_notice_is_heard_once_and_a_stopping_bridge_fails_those_left(
    nats_url: str,
) -> None:
    heard: list[BaseException | None] = []
    first_heard = trio.Event()

    def hear(error: BaseException | None) -> None:
        heard.append(error)
        first_heard.set()

    async with open_bridge(nats_url) as bridge:
        sent = bridge.notice(hear)
        bridge.notice(hear)  # never answered

        async def answer_twice() -> None:
            sent.send(None)
            sent.fail(RuntimeError("a second answer is ignored"))

        with trio.fail_after(5):
            await bridge.call(answer_twice)
            await first_heard.wait()
        assert heard == [None]
        assert bridge.statistics().calls_waiting == 1
    assert heard[0] is None and isinstance(heard[1], NotConnected)
    assert len(heard) == 2


async def test_a_cancelled_fetch_returns_at_once_and_the_broker_keeps_working(
    nats_url: str, namespace: str
) -> None:
    async with open_jetstream_broker(nats_url) as broker:
        stream, prefix = await work_queue(broker, namespace)
        with trio.fail_after(10):
            started = trio.current_time()
            with trio.move_on_after(0.3):
                await broker.fetch(stream, "workers", 1, expires=30.0)
            assert trio.current_time() - started < 1.5
            await wait_idle(broker)
            await broker.publish(Message(f"{prefix}.a", b"after"))
            [delivery] = await broker.fetch(stream, "workers", 1, expires=5.0)
        assert delivery.data == b"after"


async def test_errors_cross_back_as_actorq_errors(nats_url: str, namespace: str) -> None:
    async with open_jetstream_broker(nats_url) as broker:
        with pytest.raises(NotFound, match="MISSING"):
            await broker.fetch(f"{namespace.upper()}MISSING", "workers", 1, expires=1.0)
        with pytest.raises(NotFound):
            async with broker.pull(f"{namespace.upper()}MISSING", "workers"):
                pass


# --- connection state, pause and resume ----------------------------------------------------


async def test_connection_state_follows_the_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with start_server(store_dir=tmp_path) as server:
        async with open_jetstream_broker(server.url, **FAST_RECONNECT) as broker:
            assert broker.connection.value is ConnectionState.CONNECTED
            with trio.fail_after(15):
                await server.stop()
                await broker.connection.wait_value(ConnectionState.RECONNECTING)
                with pytest.raises(NotConnected):
                    await broker.stream_info("ANY")
                await server.restart()
                await broker.connection.wait_value(ConnectionState.CONNECTED)
            bridge = broker.bridge
        assert bridge.connection.value is ConnectionState.CLOSED


async def test_a_pull_subscription_pauses_while_disconnected_and_resumes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with start_server(store_dir=tmp_path) as server:
        async with open_jetstream_broker(server.url, **FAST_RECONNECT) as broker:
            stream, prefix = await work_queue(broker, "pause")
            async with broker.pull(stream, "workers") as subscription:
                subscription.request(2)
                with trio.fail_after(20):
                    await broker.publish(Message(f"{prefix}.a", b"before"))
                    [first] = await subscription.receive()
                    await broker.ack(first)
                    await server.stop()
                    await broker.connection.wait_value(ConnectionState.RECONNECTING)
                    with trio.move_on_after(0.3):
                        pytest.fail(f"delivered while disconnected: {await subscription.receive()}")
                    await server.restart()
                    await broker.connection.wait_value(ConnectionState.CONNECTED)
                    while True:  # the first publishes may race JetStream's own recovery
                        try:
                            await broker.publish(Message(f"{prefix}.a", b"after"))
                            break
                        except PublishFailed:
                            await trio.sleep(0.1)
                    [second] = await subscription.receive()
                    assert subscription.credits == 0
        assert (first.data, second.data) == (b"before", b"after")


async def test_the_bridge_ends_with_an_error_when_the_connection_closes_for_good(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    async with start_server(store_dir=tmp_path) as server:
        with trio.fail_after(15):
            with pytest.RaisesGroup(pytest.RaisesExc(NotConnected, match="closed")):
                async with trio.open_nursery() as nursery:
                    bridge = Bridge(server.url, reconnect_time_wait=0.05, max_reconnect_attempts=1)
                    await nursery.start(bridge.run)
                    await server.stop()


# --- connecting: options, auth, unreachable servers ---------------------------------------


async def test_credentials_pass_through_to_nats() -> None:
    async with start_server(user="actorq", password="s3cret") as server:
        url = server.url
        async with open_broker(url, user="actorq", password="s3cret", name="auth-test") as broker:
            assert broker.connection.value is ConnectionState.CONNECTED
        with pytest.raises(NotConnected, match="authorization") as refused:
            async with open_broker(url, user="actorq", password="wrong"):
                pass
        assert url in str(refused.value)
        # A password in the URL never shows in messages.
        with pytest.raises(NotConnected) as refused:
            async with open_broker(url.replace("://", "://actorq:wrong@")):
                pass
        assert "actorq:***@" in str(refused.value)
        assert "wrong" not in str(refused.value)


async def test_an_unreachable_server_fails_at_once_naming_the_url() -> None:
    [port] = free_ports(1)
    url = f"nats://127.0.0.1:{port}"
    with trio.fail_after(5):
        with pytest.raises(NotConnected, match="connection refused") as refused:
            async with open_broker(url):
                pass
        # As an actor: nursery.start reports the failure, not a nats-py traceback.
        with pytest.RaisesGroup(pytest.RaisesExc(NotConnected, match="refused")):
            async with trio.open_nursery() as nursery:
                await nursery.start(Bridge(url).run)
    assert url in str(refused.value)


async def test_callbacks_belong_to_the_bridge() -> None:
    async def on_error(exc: Exception) -> None:  # pragma: no cover - never called
        pass

    with pytest.raises(TypeError, match="connection"):
        Bridge("nats://127.0.0.1:4222", error_cb=on_error)


async def test_nothing_is_left_behind(
    nats_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = set(threading.enumerate())
    caplog.set_level(logging.WARNING)
    async with open_jetstream_broker(nats_url) as broker:
        stream, prefix = await work_queue(broker, namespace)
        await broker.ensure_kv(KvConfig(bucket=namespace))
        assert any(t.name.startswith("actorq-bridge") for t in threading.enumerate())
        async with (
            broker.pull(stream, "workers") as subscription,
            broker.subscribe(f"{prefix}.>") as messages,
            broker.kv_watch(namespace) as watch,
            aclosing(aiter(watch)) as events,
        ):
            subscription.request(10)
            await broker.publish(Message(f"{prefix}.a", b"x"))
            with trio.fail_after(10):
                assert isinstance(await anext(events), CaughtUp)
                await anext(aiter(messages))
                await subscription.receive()
            # Leave with a fetch in flight and a delivery unacknowledged.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(broker.fetch, expires=30.0), stream, "workers", 1
                )
                await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
    assert set(threading.enumerate()) == before
    assert broker.connection.value is ConnectionState.CLOSED
    complaints = [r for r in caplog.records if r.name.startswith(("asyncio", "nats", "actorq"))]
    assert complaints == []
    with pytest.raises(NotConnected):
        await broker.publish(Message(f"{prefix}.a", b"too late"))


# --- the hot path -------------------------------------------------------------------------


async def test_publish_many_reports_a_bad_message_in_place(nats_url: str, namespace: str) -> None:
    async with open_jetstream_broker(nats_url) as broker:
        stream, prefix = await work_queue(broker, namespace)
        results = await broker.publish_many(
            [
                Message(f"{prefix}.a", b"1", {MSG_ID: "one"}),
                Message(f"{prefix}.bad subject", b"2"),
                Message(f"{prefix}.b", b"3", {"Bad Header": "x"}),
                Message(f"{prefix}.a", b"1", {MSG_ID: "one"}),
            ]
        )
    assert isinstance(results[0], PubAck)
    assert not results[0].duplicate
    assert isinstance(results[1], PublishFailed)
    assert "bad subject" in str(results[1])
    assert isinstance(results[2], PublishFailed)
    assert "Bad Header" in str(results[2])
    assert isinstance(results[3], PubAck)
    assert results[3].duplicate
    assert results[3].seq == results[0].seq


async def test_single_publishes_share_the_window(nats_url: str, namespace: str) -> None:
    """`publish` goes through the publish lane; many at once wait for room in the window."""
    async with open_jetstream_broker(nats_url, publish_window=4) as broker:
        stream, prefix = await work_queue(broker, namespace)
        acks: list[PubAck] = []

        async def publish(i: int) -> None:
            acks.append(await broker.publish(Message(f"{prefix}.a", str(i).encode())))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(publish, i)
            await wait_idle(broker)
    assert sorted(ack.seq for ack in acks) == list(range(1, 201))


async def test_cancelled_publishes_are_not_waited_for(nats_url: str, namespace: str) -> None:
    async with open_jetstream_broker(nats_url) as broker:
        stream, prefix = await work_queue(broker, namespace)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(100):
                    nursery.start_soon(broker.publish, Message(f"{prefix}.a", str(i).encode()))
                await trio.testing.wait_all_tasks_blocked()  # the publishes are waiting
                nursery.cancel_scope.cancel()
            await wait_idle(broker)
            ack = await broker.publish(Message(f"{prefix}.a", b"after"))
    assert ack.seq > 0


async def test_header_values_lose_line_breaks(nats_url: str, namespace: str) -> None:
    async with open_jetstream_broker(nats_url) as broker:
        stream, prefix = await work_queue(broker, namespace)
        await broker.publish(Message(f"{prefix}.a", b"", {"Trace": "one\r\ntwo"}))
        with trio.fail_after(10):
            [delivery] = await broker.fetch(stream, "workers", 1, expires=5.0)
    assert delivery.headers["Trace"] == "one  two"


async def test_an_expiring_key_shows_in_a_watch(nats_url: str, namespace: str) -> None:
    async with open_jetstream_broker(nats_url) as broker:
        await broker.ensure_kv(KvConfig(bucket=namespace, allow_per_key_ttl=True))
        await broker.kv_create(namespace, "lease", b"me", ttl=1.0)
        seen: list[KvOperation] = []
        with trio.fail_after(10):
            async with broker.kv_watch(namespace) as watch, aclosing(aiter(watch)) as events:
                async for event in events:
                    if isinstance(event, KvEntry):
                        seen.append(event.operation)
                        if event.operation is not KvOperation.PUT:
                            break
        assert seen == [KvOperation.PUT, KvOperation.PURGE]
        assert await broker.kv_get(namespace, "lease") is None
        await broker.kv_create(namespace, "lease", b"next", ttl=1.0)


async def test_a_watch_goes_on_after_the_server_restarts(namespace: str) -> None:
    # The watch's consumer lives in the server's memory: after a restart the watch creates a
    # new one after the last entry it took, so nothing is lost or repeated.
    with trio.fail_after(30):
        async with (
            start_server() as server,
            open_jetstream_broker(
                server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
            ) as broker,
        ):
            await broker.ensure_kv(KvConfig(bucket=namespace))
            await broker.kv_put(namespace, "a", b"1")
            async with broker.kv_watch(namespace) as watch, aclosing(aiter(watch)) as events:
                first = await anext(events)
                assert isinstance(first, KvEntry)
                assert first.key == "a"
                assert isinstance(await anext(events), CaughtUp)
                await broker.kv_put(namespace, "b", b"2")
                await server.stop()
                await server.restart()
                await broker.connection.wait_value(ConnectionState.CONNECTED)
                await broker.kv_put(namespace, "c", b"3")  # restart() returns once it is ready
                keys = [(await anext(events)).key for _ in range(2)]  # type: ignore[union-attr]
                assert keys == ["b", "c"]


def test_both_ack_subject_layouts_parse() -> None:
    v1 = "$JS.ACK.ORDERS.workers.2.41.7.1700000000123456789.5"
    v2 = "$JS.ACK.hub.ACCHASH.ORDERS.workers.2.41.7.1700000000123456789.5.rnd"
    for reply in (v1, v2, v2.removesuffix(".rnd")):
        delivery = parse_delivery("orders.new", reply, b"x", {"K": "v"})
        assert (delivery.stream, delivery.consumer) == ("ORDERS", "workers")
        assert (delivery.num_delivered, delivery.stream_seq, delivery.consumer_seq) == (2, 41, 7)
        assert delivery.num_pending == 5
        assert delivery.timestamp == pytest.approx(1_700_000_000.123456789)
        assert delivery.token == reply
    with pytest.raises(Exception, match="ack subject"):
        parse_delivery("x", "$JS.ACK.too.short", b"", None)


def test_pubacks_parse_fast_and_slow() -> None:
    assert parse_puback(b'{"stream":"S","seq":12}') == PubAck("S", 12)
    assert parse_puback(b'{"stream":"S","seq":12,"duplicate":true}') == PubAck("S", 12, True)
    assert parse_puback(b'{"stream":"S","domain":"d","seq":3}') == PubAck("S", 3)
    error = parse_puback(b'{"error":{"code":400,"err_code":10071,"description":"wrong"}}')
    assert isinstance(error, dict)
    assert error["err_code"] == 10071


def test_commands_and_headers_encode_like_nats_py() -> None:
    assert pub_command("a.b", "", b"hi") == b"PUB a.b 2\r\nhi\r\n"
    assert pub_command("a.b", "_INBOX.x", b"") == b"PUB a.b _INBOX.x 0\r\n\r\n"
    block = header_block({"Nats-Msg-Id": " id-1 ", "X": "a\nb"})
    assert block == b"NATS/1.0\r\nNats-Msg-Id: id-1\r\nX: a b\r\n\r\n"
    assert pub_command("a", "r", b"x", {"K": "v"}) == (
        b"HPUB a r 18 19\r\nNATS/1.0\r\nK: v\r\n\r\nx\r\n"
    )
    with pytest.raises(EncodeError):
        pub_command("a b", "", b"")
    with pytest.raises(EncodeError):
        header_block({"a:b": "x"})
    status = parse_headers(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\n\r\n")
    assert status == {
        "Status": "408",
        "Description": "Request Timeout",
        "Nats-Pending-Messages": "3",
    }
    assert parse_headers(b"NATS/1.0 100\r\n\r\n") == {"Status": "100"}


async def test_the_bridge_starts_under_a_nursery(nats_url: str) -> None:
    async with trio.open_nursery() as nursery:
        started = time.monotonic()
        bridge = await nursery.start(Bridge(nats_url, name="nursery-test").run)
        assert time.monotonic() - started < 5
        assert bridge.connection.value is ConnectionState.CONNECTED
        nursery.cancel_scope.cancel()
    assert bridge.connection.value is ConnectionState.CLOSED


def test_the_bridge_benchmark_runs() -> None:
    """`bench/bridge.py` is not a timed test, but it must keep working as the code changes."""
    bench = Path(__file__).resolve().parents[2] / "bench" / "bridge.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--messages", "2000", "--rounds", "1", "--batch", "500"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| pull + ack |" in done.stdout
