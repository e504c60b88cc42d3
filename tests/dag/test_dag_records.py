"""The stored records of a run: the hand-written encoders and decoders agree with the generic
converter, and a step's merged view carries every field of its state."""

from __future__ import annotations

import json

import attrs
import cattrs

from actorq._codec import converter
from actorq.dag._model import (
    ArgRef,
    SpecChunk,
    StepError,
    StepOutcome,
    StepSpec,
    StepState,
    StepStatus,
    decode,
    encode,
    encode_chunks,
    merge,
)

# The converter actorq would use without its hand-written hooks.
generic = cattrs.Converter()

STATE = StepState(
    id="a.b",
    status=StepStatus.FAILED,
    generation=3,
    held=True,
    held_at=1.5,
    released_before=True,
    released_after=True,
    dispatched_at=2.5,
    finished_at=3.5,
    error=StepError("lost", "gone"),
    lost=2,
)
OUTCOME = StepOutcome(
    step="a.b",
    task="t",
    status=StepStatus.DONE,
    generation=3,
    attempts=2,
    result={"x": [1, 2]},
    error=StepError("error", "boom"),
    worker="w",
    finished_at=4.5,
)
SPEC = StepSpec(
    id="s",
    task="t",
    queue="media",
    priority=2,
    headers={"Actorq-Timeout": "5"},
    deadline_after=9.0,
    payload={"args": [None, 1], "kwargs": {"k": None}},
    refs=(
        ArgRef(("args", 0), step="u"),
        ArgRef(("kwargs", "k"), step="v", has_default=True, default=[1]),
        ArgRef(("args", 2), signal="go"),
    ),
    requires=("u",),
    awaits=("v",),
    signals=("go",),
    optional=True,
    break_before=("b1",),
    break_after=("b2",),
    parent="p",
    added_at=7.0,
)


def test_states_and_outcomes_encode_as_the_generic_converter_does() -> None:
    for record in (
        STATE,
        StepState(id="x"),
        OUTCOME,
        StepOutcome(step="x", status=StepStatus.DONE),
    ):
        assert json.loads(encode(record)) == generic.unstructure(record)
        assert (
            decode(f"r.{'step' if isinstance(record, StepState) else 'outcome'}.x", encode(record))
            == record
        )


def test_specs_leave_defaults_out_and_read_back_whole() -> None:
    for spec in (SPEC, StepSpec(id="x", task="t")):
        [chunk] = encode_chunks([spec])
        assert decode("r.spec.0", chunk) == SpecChunk((spec,))
    assert json.loads(encode(StepSpec(id="x", task="t"))) == {
        "id": "x",
        "task": "t",
        "payload": None,
        "added_at": 0.0,
    }
    # A record written with every field (as before defaults were left out) reads the same.
    full = generic.unstructure(SPEC)
    assert decode("r.spec.0", json.dumps({"steps": [full]}).encode()) == SpecChunk((SPEC,))


def test_a_merged_step_carries_every_field_of_its_state() -> None:
    merged = merge(SPEC, STATE)
    for field in attrs.fields(StepState):
        assert getattr(merged, field.name) == getattr(STATE, field.name) or field.name == "id"
    assert converter.unstructure(merged)["queue"] == "media"  # a StepInfo keeps every field
