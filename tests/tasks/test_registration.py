"""Registering functions as tasks, and the arguments a producer may send them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs
import pytest

import actorq
from actorq._task import remote_task


@attrs.frozen
class Point:
    x: int
    y: int


app = actorq.App("registration")


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="media.resize", queue="media", timeout=30.0)
def resize(path: str, *, width: int = 100) -> str:
    return f"{path}@{width}"


@app.task
async def distance(a: Point, b: Point | None = None, *more: Point, **tags: str) -> float:
    return 0.0


def test_default_name_is_module_qualified() -> None:
    assert add.name == f"{__name__}.add"
    assert add.is_async
    assert not resize.is_async
    assert add.return_type is int


def test_explicit_name_queue_and_options() -> None:
    assert resize.name == "media.resize"
    assert resize.queue == "media"
    assert resize.settings.timeout == 30.0
    assert app.lookup("media.resize") is resize


def test_nested_functions_drop_locals_from_their_name() -> None:
    local = actorq.App("nested")

    @local.task
    async def inner() -> None: ...

    assert inner.name == f"{__name__}.test_nested_functions_drop_locals_from_their_name.inner"


def test_options_returns_a_new_frozen_task() -> None:
    slow = add.options(timeout=5.0, queue="slow")
    assert slow is not add
    assert (slow.name, slow.queue, slow.settings.timeout) == (add.name, "slow", 5.0)
    assert add.settings.timeout is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        slow.name = "other"  # type: ignore[misc]


def test_unknown_or_invalid_options_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown task option.*'tiemout'"):
        add.options(tiemout=5)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        add.options(timeout=-1)
    with pytest.raises(ValueError, match="invalid queue name"):
        add.options(queue="a.b")
    with pytest.raises(ValueError, match="timezone-aware"):
        add.options(deadline=dt.datetime(2030, 1, 1))


def test_invalid_and_duplicate_names_are_refused() -> None:
    local = actorq.App("dupes")

    async def job() -> None: ...

    local.task(name="jobs.one")(job)
    with pytest.raises(ValueError, match="already registered"):
        local.task(name="jobs.one")(job)
    with pytest.raises(ValueError, match="invalid task name 'bad name'"):
        local.task(name="bad name")(job)
    with pytest.raises(ValueError, match="invalid app namespace"):
        actorq.App("Bad.NS")


def test_generators_are_refused() -> None:
    async def stream():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(TypeError, match="generator"):
        actorq.App("gens").task(stream)


def payload(encoded: bytes) -> Any:
    return json.loads(encoded)


def test_arguments_are_bound_checked_and_encoded() -> None:
    assert payload(add.encode_arguments((1,), {"y": 2})) == {"args": [1, 2], "kwargs": {}}
    assert payload(resize.encode_arguments(("/p",), {"width": 3})) == {
        "args": ["/p"],
        "kwargs": {"width": 3},
    }
    encoded = distance.encode_arguments((Point(1, 2), None, Point(3, 4)), {"color": "red"})
    assert payload(encoded) == {
        "args": [{"x": 1, "y": 2}, None, {"x": 3, "y": 4}],
        "kwargs": {"color": "red"},
    }


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1,), {}, r"add\(\): missing a required argument: 'y'"),
        ((1, 2, 3), {}, r"add\(\): too many positional arguments"),
        ((1, 2), {"z": 3}, r"add\(\): got an unexpected keyword argument 'z'"),
        (("1", 2), {}, r"add\(\): argument 'x' expected int, got str '1'"),
        ((True, 2), {}, r"argument 'x' expected int, got bool True"),
    ],
)
def test_bad_arguments_are_refused_before_publishing(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        add.encode_arguments(args, kwargs)


def test_attrs_arguments_are_checked_deeply() -> None:
    with pytest.raises(TypeError, match=r"argument 'a' expected Point, got dict"):
        distance.encode_arguments(({"x": 1, "y": 2},), {})
    with pytest.raises(TypeError, match=r"argument 'more'\[0\] expected Point"):
        distance.encode_arguments((Point(1, 1), None, 5), {})
    with pytest.raises(TypeError, match=r"argument 'color' expected str"):
        distance.encode_arguments((Point(1, 1),), {"color": 1})


def test_unencodable_arguments_are_refused() -> None:
    local = actorq.App("enc")

    @local.task
    async def anything(value: Any) -> None: ...

    with pytest.raises(TypeError, match="cannot be encoded as JSON"):
        anything.encode_arguments((object(),), {})


def test_worker_side_decoding_structures_annotated_types() -> None:
    encoded = distance.encode_arguments((Point(1, 2), None, Point(3, 4)), {"color": "red"})
    args, kwargs = distance.decode_arguments(encoded)
    assert args == [Point(1, 2), None, Point(3, 4)]
    assert kwargs == {"color": "red"}


def test_worker_side_decoding_names_bad_payloads() -> None:
    with pytest.raises(ValueError):
        add.decode_arguments(b"{not json")
    with pytest.raises(ValueError, match="'args' \\(list\\)"):
        add.decode_arguments(b'{"args": 1}')
    with pytest.raises(TypeError, match="missing a required argument"):
        add.decode_arguments(b'{"args": [1]}')
    with pytest.raises(TypeError, match="argument 'a'"):
        distance.decode_arguments(b'{"args": [{"x": "nope"}]}')


def test_a_call_with_every_plain_parameter_in_order_binds_like_any_other() -> None:
    # Positional calls of plain parameters skip `Signature.bind`; nothing else may change.
    assert payload(add.encode_arguments((1, 2), {})) == {"args": [1, 2], "kwargs": {}}
    assert add.decode_arguments(b'{"args": [1, 2], "kwargs": {}}') == ([1, 2], {})
    assert add.decode_arguments(b'{"args": [1], "kwargs": {"y": 2}}') == ([1, 2], {})
    with pytest.raises(TypeError, match=r"add\(\): argument 'y' expected int, got str"):
        add.encode_arguments((1, "2"), {})
    with pytest.raises(TypeError, match=r"add\(\): argument 'y'"):
        add.decode_arguments(b'{"args": [1, {"not": "an int"}]}')
    with pytest.raises(TypeError, match="too many positional arguments"):
        add.decode_arguments(b'{"args": [1, 2, 3]}')


def test_remote_tasks_are_not_checked_locally() -> None:
    ref = remote_task("media.resize", queue="media", returns=str)
    assert ref.queue == "media"
    assert ref.return_type is str
    assert payload(ref.encode_arguments(("anything", 1), {})) == {
        "args": ["anything", 1],
        "kwargs": {},
    }
    with pytest.raises(TypeError, match="remote reference"):
        ref()
