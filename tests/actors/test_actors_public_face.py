"""`actorq.actors` is a public face: every name documented and reported under its public module."""

from __future__ import annotations

import pytest

import actorq
import actorq.actors

# ``annotations`` is the ``from __future__`` feature flag, not an export.
PUBLIC = sorted(
    name for name in vars(actorq.actors) if not name.startswith("_") and name != "annotations"
)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_are_documented_and_public(name: str) -> None:
    obj = getattr(actorq.actors, name)
    assert obj.__module__ in {"actorq", "actorq.actors"}
    assert (obj.__doc__ or "").strip(), f"actorq.actors.{name} has no docstring"


def test_the_generic_runtime_is_complete() -> None:
    expected = {
        "ActorRef",
        "ChildInfo",
        "ChildSpec",
        "ChildState",
        "DynamicSupervisor",
        "Inbox",
        "MailboxStatistics",
        "Overflow",
        "Reply",
        "Restart",
        "Shutdown",
        "StopSignal",
        "Strategy",
        "Supervisor",
        "SupervisorPolicy",
        "SupervisorStatistics",
        "current_stop_signal",
        "open_mailbox",
    }
    assert expected <= set(PUBLIC)
    assert actorq.Overflow is actorq.actors.Overflow
