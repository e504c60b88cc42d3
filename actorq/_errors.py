"""The one exception hierarchy of actorq.

Every error actorq raises on purpose derives from `ActorqError`, so applications can catch
"anything actorq refused" in one place. Argument errors in user calls stay the builtin
`TypeError` / `ValueError` (raised before anything is published), because that is what Python
code expects of a bad call.
"""

from __future__ import annotations


class ActorqError(Exception):
    """Base class of every error actorq raises on purpose."""


# --- actors -------------------------------------------------------------------------------


class ActorError(ActorqError):
    """Base class of errors raised by the actor runtime (`actorq.actors`)."""


class ActorGone(ActorError):
    """The actor behind a reference has stopped; its mailbox no longer accepts messages."""


class MailboxFull(ActorError):
    """A mailbox with the `Overflow.REJECT` policy (or a `*_nowait` send) found no room."""


class AskTimeout(ActorError):
    """An `ActorRef.ask` got no reply within its timeout."""


class SupervisorGaveUp(ActorError):
    """A supervisor exceeded its restart intensity and stopped all of its children.

    The child's last error is the ``__cause__``. A parent supervisor treats this like any
    other crash of its child.
    """


# --- brokers ------------------------------------------------------------------------------


class BrokerError(ActorqError):
    """Base class of transport errors (memory or JetStream broker)."""


class NotConnected(BrokerError):
    """The broker is not connected (disconnected, reconnecting or closed)."""


class NotFound(BrokerError):
    """A stream, consumer, message or bucket does not exist."""


class KeyExists(BrokerError):
    """`kv_create` found a live value under the key."""


class WrongRevision(BrokerError):
    """A compare-and-set KV write named a revision that is no longer the key's latest."""


class PublishFailed(BrokerError):
    """The server refused a publish (no stream for the subject, wrong expectation, ...)."""


class WrongLastSequence(PublishFailed):
    """A publish's ``Nats-Expected-Last-Sequence`` / ``-Last-Subject-Sequence`` did not hold:
    something else was written first (optimistic concurrency lost the race).

    Attributes:
        last_seq: The sequence the stream (or subject) actually has, when the server said.
    """

    def __init__(self, message: str, last_seq: int | None = None) -> None:
        super().__init__(message)
        self.last_seq = last_seq


class InvalidUrl(BrokerError, ValueError):
    """A broker URL that actorq cannot use."""


# --- embedded server ----------------------------------------------------------------------


class EmbeddedServerError(ActorqError):
    """The embedded nats-server could not be started (binary missing, port taken, ...).

    ``port`` is the port found already in use, when that was the cause; ``log_tail`` holds
    the last lines the server logged, when it got that far.
    """

    def __init__(self, message: str, *, port: int | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.port = port
        self.log_tail = log_tail


# --- tasks --------------------------------------------------------------------------------


class TaskFailed(ActorqError):
    """A task failed for good (its retries, if any, are exhausted).

    Attributes:
        task_id: The failed task's id.
        task: Its registered name.
        kind: What failed: ``error`` (the handler raised), ``timeout``, ``deadline``,
            ``decode``, ``unknown_task``, ``result_too_large``.
        message: The error message (for ``error``: ``"ExceptionType: message"``).
        type: Qualified name of the exception type, when there was one.
        remote_traceback: The traceback as formatted on the worker.
        attempts: How many attempts were made.
    """

    def __init__(
        self,
        *,
        task_id: str,
        task: str,
        kind: str,
        message: str,
        type: str = "",
        remote_traceback: str = "",
        attempts: int = 0,
    ) -> None:
        super().__init__(
            f"task {task} ({task_id}) failed after {attempts} attempt(s): [{kind}] {message}"
        )
        self.task_id = task_id
        self.task = task
        self.kind = kind
        self.message = message
        self.type = type
        self.remote_traceback = remote_traceback
        self.attempts = attempts


class TaskCancelled(ActorqError):
    """The task was cancelled before it produced a result."""


class TaskDropped(ActorqError):
    """The task was dropped from the client's disconnected buffer by its overflow policy
    (`Overflow.DROP_NEWEST` / `DROP_OLDEST`) and was never published."""


class ResultTimeout(ActorqError, TimeoutError):
    """No result arrived within the wait's timeout. The task itself may still run."""


# --- coordination (actorq.kv) -------------------------------------------------------------


class LeaseLost(ActorqError):
    """A lease (a lock, a leadership) was lost while its holder relied on it.

    Raised by ``async with client.lock(...)`` when the lease ended before the block did: the
    block was cancelled at that moment, and this error says which lease and why (taken over
    after it expired, deleted by someone else, not renewable before its deadline).

    Attributes:
        name: The lock's (or role's) name.
        reason: Why the lease is gone.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"lease {name!r} was lost: {reason}")
        self.name = name
        self.reason = reason


class LockHeld(KeyExists):
    """A lock could not be taken because another holder has it (``timeout`` ran out, or a
    try-lock with ``timeout=0``). ``holder`` describes the current holder, when known."""

    def __init__(self, message: str, *, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class FencedOut(ActorqError):
    """A fenced write was refused: the writer's lease is gone, or a writer holding a newer
    lease (a higher fencing token) already wrote the key. A deposed leader gets this instead
    of corrupting state its successor owns."""


# --- DAG workflows (actorq.dag) -------------------------------------------------------------


class StepFailed(ActorqError):
    """A DAG step failed for good (its retries, if any, are exhausted).

    Attributes:
        run_id: The run's id.
        step: The step's id.
        kind: What failed (as in `TaskFailed.kind`; ``lost`` for a step whose task message
            kept disappearing).
        message: The error message, truncated to 4096 bytes.
        attempts: How many attempts were made.
    """

    def __init__(
        self, *, run_id: str, step: str, kind: str, message: str, attempts: int = 0
    ) -> None:
        super().__init__(
            f"step {step!r} of DAG run {run_id!r} failed after {attempts} attempt(s):"
            f" [{kind}] {message}"
        )
        self.run_id = run_id
        self.step = step
        self.kind = kind
        self.message = message
        self.attempts = attempts


class StepSkipped(ActorqError):
    """A DAG step was skipped: an upstream step it needs failed or was skipped.

    Attributes:
        run_id: The run's id.
        step: The step's id.
        upstream: The step whose outcome skipped it.
    """

    def __init__(self, *, run_id: str, step: str, upstream: str) -> None:
        super().__init__(
            f"step {step!r} of DAG run {run_id!r} was skipped: its upstream {upstream!r} did"
            " not succeed"
        )
        self.run_id = run_id
        self.step = step
        self.upstream = upstream


class StepCancelled(ActorqError):
    """A DAG step was cancelled (its run was cancelled before it ran), or a step could not be
    added to a cancelled run.

    Attributes:
        run_id: The run's id.
        step: The step's id.
    """

    def __init__(self, *, run_id: str, step: str, message: str = "") -> None:
        super().__init__(message or f"step {step!r} of DAG run {run_id!r} was cancelled")
        self.run_id = run_id
        self.step = step
