"""The pytest plugin `actorq.testing.plugin`, used the way a user's project uses it.

Each test writes a small project (an app module, a ``conftest.py`` enabling the plugin, test
files) and runs pytest on it in a subprocess, so the plugin is loaded exactly as in a user's
run and nothing of this test session leaks into it.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

APP = """
import actorq
import trio

app = actorq.App("plugin-demo")
attempts = []


@app.task(name="add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(
    name="flaky",
    retry=actorq.RetryPolicy(max_attempts=3, backoff=actorq.Backoff.constant(10.0)),
)
async def flaky() -> float:
    attempts.append(trio.current_time())
    if len(attempts) < 3:
        raise RuntimeError("not yet")
    return trio.current_time()
"""

CONFTEST = """
import pytest

pytest_plugins = ["actorq.testing.plugin"]


@pytest.fixture
def actorq_app():
    from demo_app import app
    return app
"""

INI = """
[pytest]
trio_mode = true
filterwarnings = error
"""


def project(pytester: pytest.Pytester, conftest: str = CONFTEST, **tests: str) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(demo_app=APP)
    pytester.makeconftest(conftest)
    pytester.makepyfile(**{name: textwrap.dedent(body) for name, body in tests.items()})


def test_memory_client_and_worker_with_exact_retry_timing(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_demo="""
        import trio
        from demo_app import add, attempts, flaky


        async def test_round_trip(actorq_client, actorq_worker):
            assert await actorq_client.call(add, 1, 2) == 3
            assert actorq_client.url == "memory://actorq-test"


        async def test_retries_take_no_real_time(actorq_client, actorq_worker, autojump_clock):
            start = trio.current_time()
            finished = await actorq_client.call(flaky)
            # Three attempts, ten (virtual) seconds apart, exactly.
            assert [t - start for t in attempts] == [0.0, 10.0, 20.0]
            assert finished - start == 20.0


        async def test_each_test_gets_a_fresh_memory_broker(actorq_client):
            assert await actorq_client.purge_queue("default") == 0
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_worker_options_are_a_fixture_to_override(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_options="""
        import pytest
        from demo_app import add


        @pytest.fixture
        def actorq_worker_options():
            return {"queues": ["fast"], "concurrency": 2}


        async def test_queue(actorq_client, actorq_worker):
            handle = await actorq_client.enqueue(add.options(queue="fast"), 2, 3)
            assert await handle.result(timeout=10) == 5
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.mark.integration
def test_the_same_tests_on_a_real_server(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        test_nats="""
        import pytest
        import trio
        from demo_app import add


        @pytest.fixture
        def actorq_url(actorq_nats_url):
            return actorq_nats_url


        async def test_round_trip(actorq_client, actorq_worker, actorq_app):
            with trio.fail_after(20):
                assert await actorq_client.call(add, 1, 2) == 3
            assert actorq_client.url.startswith("nats://127.0.0.1:")
            # Its own namespace on the shared server, the same tasks.
            assert actorq_client.app.namespace.startswith("plugin-demo-")
            assert actorq_client.app.tasks == actorq_app.tasks


        async def test_a_second_test_starts_empty(actorq_client):
            info = await actorq_client.broker.stream_info(actorq_client.app.layout.tasks_stream)
            assert info.messages == 0


        def test_the_server_is_a_sync_session_fixture(actorq_nats, actorq_nats_url):
            assert actorq_nats.running
            assert actorq_nats.url == actorq_nats_url
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_without_an_app_fixture_the_error_says_what_to_do(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        conftest='pytest_plugins = ["actorq.testing.plugin"]\n',
        test_missing="""
        async def test_needs_app(actorq_client):
            pass
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named 'actorq_app'*"])
