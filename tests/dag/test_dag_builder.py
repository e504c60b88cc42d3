"""Building and submitting DAGs: step ids, argument checks against signatures (references by
their upstream's return annotation), and the errors refused at submit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import actorq
from actorq import RunStatus, StepStatus
from actorq.dag._checks import compatible, find_cycle

if TYPE_CHECKING:
    import trio.testing

app = actorq.App("builder")


@app.task(name="b.source")
async def source() -> int:
    return 1


@app.task(name="b.text")
async def text() -> str:
    return "x"


@app.task(name="b.maybe")
async def maybe() -> int | None:
    return None


@app.task(name="b.half")
async def half(x: float) -> float:
    return x / 2


@app.task(name="b.total")
async def total(xs: list[int]) -> int:
    return sum(xs)


@app.task(name="b.label")
async def label(x: int, *, tag: str = "") -> str:
    return f"{tag}{x}"


def test_default_step_ids_are_the_task_name_then_numbered() -> None:
    dag = actorq.DAG()
    ids = [dag.step(source).id for _ in range(3)]
    assert ids == ["b.source", "b.source-2", "b.source-3"]
    assert dag.step(source.options(step_id="mine")).id == "mine"
    with pytest.raises(ValueError, match="already has a step 'mine'"):
        dag.step(source.options(step_id="mine"))
    with pytest.raises(ValueError, match="invalid step id"):
        source.options(step_id="has space")


def test_arguments_are_checked_at_build_time() -> None:
    dag = actorq.DAG()
    one = dag.step(source)
    word = dag.step(text)
    dag.step(half, one)  # an int result fits a float parameter
    dag.step(total, [one, 2, one])  # references inside a list
    dag.step(label, one, tag="t")
    with pytest.raises(TypeError, match=r"argument 'x' expects int, but step 'b.text' returns str"):
        dag.step(label, word)
    with pytest.raises(TypeError, match=r"argument 'xs'\[1\] expects int, but step 'b.text'"):
        dag.step(total, [one, word])
    with pytest.raises(TypeError, match="expects int, but step 'b.maybe' returns"):
        dag.step(label, dag.step(maybe))
    with pytest.raises(TypeError, match="the default of step 'b.source'"):
        dag.step(label, one.or_default("none"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="argument 'x' expected int, got str"):
        dag.step(label, "7")
    with pytest.raises(TypeError, match="missing a required argument"):
        dag.step(label)
    other = actorq.DAG().step(source)
    with pytest.raises(ValueError, match="another DAG"):
        dag.step(label, other)
    with pytest.raises(ValueError, match="not supported on a DAG step"):
        dag.step(source.options(delay=5))


def test_type_compatibility() -> None:
    assert compatible(int, float)
    assert compatible(int, int | None)
    assert compatible(list[int], list[float])
    assert compatible(list[int], "list[int]")  # unresolved: the worker decides
    assert not compatible(int | None, int)
    assert not compatible(bool, int)
    assert not compatible(tuple[int, ...], tuple[int, int])
    assert compatible(tuple[int, int], tuple[float, ...])
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


async def test_errors_at_submit(namespace: str, autojump_clock: trio.testing.MockClock) -> None:
    async with actorq.connect(actorq.App(namespace), f"memory://{namespace}") as client:
        with pytest.raises(ValueError, match="has no steps"):
            await client.submit(actorq.DAG())

        dag = actorq.DAG()
        dag.step(source.options(step_id="a", after=["c"]))
        dag.step(source.options(step_id="b", after=["a"]))
        dag.step(source.options(step_id="c", after_any=["b"]))
        with pytest.raises(ValueError, match="cycle: a -> c -> b -> a"):
            await client.submit(dag)

        dag = actorq.DAG()
        dag.step(source.options(after=["nowhere"]))
        with pytest.raises(ValueError, match="unknown step 'nowhere'"):
            await client.submit(dag)

        dag = actorq.DAG("pinned")
        dag.step(source)
        run = await client.submit(dag)
        assert run.id == "pinned"
        with pytest.raises(ValueError, match="already submitted"):
            await client.submit(dag)
        again = actorq.DAG("pinned")
        again.step(source)
        with pytest.raises(actorq.KeyExists, match="'pinned' already exists"):
            await client.submit(again)
        with pytest.raises(ValueError, match="invalid DAG run id"):
            actorq.DAG("no spaces")

        # Nothing ran (no worker), but the run and its first step are recorded.
        assert await run.status() == RunStatus.RUNNING
        assert (await run.step("b.source")).status is StepStatus.RUNNING
        assert [meta.id for meta in await client.dag_runs()] == ["pinned"]
        with pytest.raises(actorq.NotFound):
            await client.dag_run("missing").status()
        with pytest.raises(actorq.NotFound):
            await client.dag_run("missing").wait()
        with pytest.raises(actorq.ResultTimeout):
            await run.result("b.source", timeout=1)
