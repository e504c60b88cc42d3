"""Names that become subjects, streams and buckets, and the JetStream layout of one app.

Everything a user names (the app namespace, queues, tasks) ends up inside NATS subjects, so it
is validated here, once, with an error that names the offending value. Task names may contain
dots (``media.resize``); a subject token cannot, so dots are encoded as ``:`` (a character a
task name may not contain, which keeps the encoding one-to-one).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets

import attrs

_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TASK_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_TASK = re.compile(rf"^{_TASK_SEGMENT}(\.{_TASK_SEGMENT})*$")
MAX_TASK_NAME = 200


def validate_namespace(namespace: str) -> str:
    """Check an app namespace: lowercase letters, digits, ``_`` and ``-``, at most 32 chars."""
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ValueError(
            f"invalid app namespace {namespace!r}: use 1-32 lowercase letters, digits, '_' or"
            " '-', starting with a letter or digit (it becomes part of subjects and streams)"
        )
    return namespace


def validate_queue(queue: str) -> str:
    """Check a queue name: letters, digits, ``_`` and ``-`` (one subject token)."""
    if not isinstance(queue, str) or not _QUEUE.match(queue):
        raise ValueError(
            f"invalid queue name {queue!r}: use 1-64 letters, digits, '_' or '-'"
            " (it becomes one subject token)"
        )
    return queue


def validate_task_name(name: str) -> str:
    """Check a task name: dot-separated segments of letters, digits, ``_`` and ``-``."""
    if not isinstance(name, str) or len(name) > MAX_TASK_NAME or not _TASK.match(name):
        raise ValueError(
            f"invalid task name {name!r}: use dot-separated segments of letters, digits, '_'"
            f" or '-' (for example 'media.resize'), at most {MAX_TASK_NAME} characters"
        )
    return name


_BUCKET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY_TOKEN = r"[A-Za-z0-9_=/-]+"
_KEY = re.compile(rf"^{_KEY_TOKEN}(\.{_KEY_TOKEN})*$")
MAX_KEY = 256


def validate_bucket_name(name: str) -> str:
    """Check a user's KV bucket name: 1-64 letters, digits, ``_`` and ``-``."""
    if not isinstance(name, str) or not _BUCKET_NAME.match(name):
        raise ValueError(
            f"invalid bucket name {name!r}: use 1-64 letters, digits, '_' or '-'"
            " (it becomes part of a stream name)"
        )
    return name


def validate_key(key: str, what: str = "key") -> str:
    """Check a KV key (or a name that becomes one: a lock, a role, a counter...): dot-separated
    tokens of letters, digits and ``_=/-``, at most 256 characters (it becomes a subject)."""
    if not isinstance(key, str) or len(key) > MAX_KEY or not _KEY.match(key):
        raise ValueError(
            f"invalid {what} {key!r}: use dot-separated tokens of letters, digits, '_', '=',"
            f" '/' or '-' (for example 'orders.eu'), at most {MAX_KEY} characters"
        )
    return key


MAX_STEP_ID = 200
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def validate_step_id(step_id: str) -> str:
    """Check a DAG step id: dot-separated segments of letters, digits, ``_`` and ``-`` (the
    shape of a task name, which is the default step id)."""
    if not isinstance(step_id, str) or len(step_id) > MAX_STEP_ID or not _TASK.match(step_id):
        raise ValueError(
            f"invalid step id {step_id!r}: use dot-separated segments of letters, digits, '_'"
            f" or '-' (for example 'fetch' or 'users.load-2'), at most {MAX_STEP_ID} characters"
        )
    return step_id


def validate_run_id(run_id: str) -> str:
    """Check a DAG run id: 1-64 letters, digits, ``_`` and ``-`` (one KV key token)."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(f"invalid DAG run id {run_id!r}: use 1-64 letters, digits, '_' or '-'")
    return run_id


def task_token(name: str) -> str:
    """The subject token of a (valid) task name: dots become ``:``."""
    return name.replace(".", ":")


def default_task_name(module: str, qualname: str) -> str:
    """The module-qualified name of a function, without the ``<locals>`` of nested ones."""
    return f"{module}.{qualname.replace('.<locals>', '')}"


@attrs.frozen
class Layout:
    """Where one app's streams, subjects, consumers and buckets live in JetStream.

    Namespaced by the app name so several apps can share one NATS. See docs/architecture.md.
    """

    namespace: str = attrs.field(converter=validate_namespace)

    @property
    def prefix(self) -> str:
        return f"actorq.{self.namespace}"

    @property
    def _upper(self) -> str:
        return self.namespace.upper().replace("-", "_")

    # tasks

    @property
    def tasks_stream(self) -> str:
        return f"ACTORQ_{self._upper}_TASKS"

    @property
    def task_subjects(self) -> str:
        return f"{self.prefix}.task.>"

    def queue_subjects(self, queue: str) -> str:
        """Every task of a queue, at every priority."""
        return f"{self.prefix}.task.{validate_queue(queue)}.>"

    def priority_subjects(self, queue: str, priority: int = 0) -> str:
        """The filter of the consumer of one priority level of a queue.

        Level 0 is ``task.<queue>.<task>``; level N adds a token, ``task.<queue>.pN.<task>``,
        so the levels' filters never overlap (required on a work-queue stream).
        """
        return f"{self.prefix}.task.{validate_queue(queue)}.{_level(priority)}*"

    def task_subject(self, queue: str, task_name: str, priority: int = 0) -> str:
        return (
            f"{self.prefix}.task.{validate_queue(queue)}.{_level(priority)}{task_token(task_name)}"
        )

    def queue_consumer(self, queue: str, priority: int = 0) -> str:
        """The durable consumer shared by every worker of a queue (one per priority level)."""
        suffix = f"-p{priority}" if priority else ""
        return f"queue-{validate_queue(queue)}{suffix}"

    # schedules: inside the tasks stream, outside every consumer's filter

    @property
    def schedule_subjects(self) -> str:
        return f"{self.prefix}.sched.>"

    def schedule_subject(self, schedule_id: str) -> str:
        return f"{self.prefix}.sched.{schedule_id}"

    @property
    def periodic_subjects(self) -> str:
        return f"{self.prefix}.sched.periodic.*"

    def periodic_subject(self, periodic_id: str) -> str:
        return f"{self.prefix}.sched.periodic.{periodic_id}"

    # results

    @property
    def results_stream(self) -> str:
        return f"ACTORQ_{self._upper}_RESULTS"

    @property
    def result_subjects(self) -> str:
        return f"{self.prefix}.result.>"

    def result_origin_subjects(self, origin: str) -> str:
        """Every result of tasks whose ids a client with this origin minted."""
        return f"{self.prefix}.result.{origin}.*"

    def result_subject(self, task_id: str) -> str:
        return f"{self.prefix}.result.{task_origin(task_id)}.{task_id}"

    # dead letters

    @property
    def dlq_stream(self) -> str:
        return f"ACTORQ_{self._upper}_DLQ"

    @property
    def dlq_subjects(self) -> str:
        return f"{self.prefix}.dlq.>"

    # key-value buckets

    def _bucket(self, purpose: str) -> str:
        return f"actorq_{self.namespace}_{purpose}"

    @property
    def cancel_bucket(self) -> str:
        """Cancellation marks, watched by every worker."""
        return self._bucket("cancel")

    @property
    def idempotency_bucket(self) -> str:
        """Results of tasks whose idempotency key succeeded, by task id."""
        return self._bucket("idempotency")

    @property
    def concurrency_bucket(self) -> str:
        """Slots of concurrency keys."""
        return self._bucket("concurrency")

    @property
    def workers_bucket(self) -> str:
        """Live workers' presence records."""
        return self._bucket("workers")

    def dlq_queue_subjects(self, queue: str) -> str:
        return f"{self.prefix}.dlq.{validate_queue(queue)}.*"

    def dlq_subject(self, queue: str, task_name: str) -> str:
        return f"{self.prefix}.dlq.{validate_queue(queue)}.{task_token(task_name)}"

    # coordination primitives (actorq.kv)

    def kv_bucket(self, name: str) -> str:
        """The bucket of a user's typed store ``name``."""
        return self._bucket(f"kv_{validate_bucket_name(name)}")

    @property
    def locks_bucket(self) -> str:
        return self._bucket("locks")

    @property
    def leaders_bucket(self) -> str:
        return self._bucket("leaders")

    @property
    def wait_groups_bucket(self) -> str:
        return self._bucket("waitgroups")

    @property
    def rate_limits_bucket(self) -> str:
        return self._bucket("ratelimits")

    @property
    def dags_bucket(self) -> str:
        """The bucket of DAG runs: every run's meta, steps and signals (see actorq.dag)."""
        return self._bucket("dags")

    @property
    def counters_stream(self) -> str:
        return f"ACTORQ_{self._upper}_COUNTERS"

    @property
    def counter_subjects(self) -> str:
        return f"{self.prefix}.counter.>"

    def counter_subject(self, name: str) -> str:
        return f"{self.prefix}.counter.{validate_key(name, 'counter name')}"


def _level(priority: int) -> str:
    return f"p{priority}." if priority else ""


# Task ids are 32 hex characters. The first ORIGIN_LENGTH are the minting client's origin, so a
# client can receive the results of all its tasks through one subscription
# (``result.<origin>.*``) while any process can still derive a task's result subject from its
# id alone.
ORIGIN_LENGTH = 12
TASK_ID_LENGTH = 32
_TASK_ID = re.compile(rf"^[0-9a-f]{{{TASK_ID_LENGTH}}}$")


def validate_task_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not _TASK_ID.match(task_id):
        raise ValueError(f"invalid task id {task_id!r}: expected 32 lowercase hex characters")
    return task_id


def task_origin(task_id: str) -> str:
    return validate_task_id(task_id)[:ORIGIN_LENGTH]


def keyed_task_id(namespace: str, task_name: str, key: str) -> str:
    """The task id of a task enqueued with a dedupe or idempotency key: every enqueue with the
    same key gets the same id (and so the same message id and the same result)."""
    digest = hashlib.sha256(f"{namespace}\x00{task_name}\x00{key}".encode()).hexdigest()
    return digest[:TASK_ID_LENGTH]


def new_origin() -> str:
    """A fresh random origin (12 hex characters) for a client or producer."""
    return secrets.token_hex(ORIGIN_LENGTH // 2)


class TaskIds:
    """Mints the task ids of one client or producer: its origin, then a counter.

    The counter starts at a random point, so ids stay unique even if an origin is reused.
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._counter = itertools.count(secrets.randbits(32))

    def next(self) -> str:
        """A fresh task id."""
        width = TASK_ID_LENGTH - ORIGIN_LENGTH
        suffix = f"{next(self._counter):0{width}x}"
        return self.origin + suffix[-width:]
