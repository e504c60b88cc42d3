"""actorq: a task queue and workflow engine on trio and NATS JetStream.

The implementation lives in private modules; this module is the public face and re-exports
every public name (``from ._x import Name as Name``), so users write ``actorq.Worker`` and
tracebacks say so too.
"""

from __future__ import annotations

from ._app import App as App
from ._client import Client as Client, connect as connect
from ._context import TaskContext as TaskContext, current_task as current_task
from ._embedded import EmbeddedServer as EmbeddedServer, start_server as start_server
from ._embedded_cluster import (
    EmbeddedCluster as EmbeddedCluster,
    start_cluster as start_cluster,
)
from ._errors import (
    ActorError as ActorError,
    ActorGone as ActorGone,
    ActorqError as ActorqError,
    AskTimeout as AskTimeout,
    BrokerError as BrokerError,
    EmbeddedServerError as EmbeddedServerError,
    InvalidUrl as InvalidUrl,
    KeyExists as KeyExists,
    LeaseLost as LeaseLost,
    MailboxFull as MailboxFull,
    NotConnected as NotConnected,
    NotFound as NotFound,
    PublishFailed as PublishFailed,
    ResultTimeout as ResultTimeout,
    StepCancelled as StepCancelled,
    StepFailed as StepFailed,
    StepSkipped as StepSkipped,
    SupervisorGaveUp as SupervisorGaveUp,
    TaskCancelled as TaskCancelled,
    TaskDropped as TaskDropped,
    TaskFailed as TaskFailed,
    WrongLastSequence as WrongLastSequence,
    WrongRevision as WrongRevision,
)
from ._handle import TaskHandle as TaskHandle
from ._middleware import (
    Dispatch as Dispatch,
    LoggingMiddleware as LoggingMiddleware,
    Middleware as Middleware,
    Settled as Settled,
)
from ._periodic import Periodic as Periodic, PeriodicInfo as PeriodicInfo, Schedule as Schedule
from ._retry import (
    Backoff as Backoff,
    NoRetry as NoRetry,
    Retry as Retry,
    RetryPolicy as RetryPolicy,
)
from ._task import (
    BoundCall as BoundCall,
    Task as Task,
    TaskOptions as TaskOptions,
    remote_task as remote_task,
)
from ._util import fixup_module_metadata as _fixup_module_metadata
from ._wire import DeadLetter as DeadLetter, ErrorInfo as ErrorInfo, ResultRecord as ResultRecord
from ._worker import Worker as Worker, WorkerStatistics as WorkerStatistics
from .actors import Overflow as Overflow
from .dag import (
    DAG as DAG,
    DagRun as DagRun,
    DagSettings as DagSettings,
    RunStatus as RunStatus,
    Step as Step,
    StepStatus as StepStatus,
    current_dag as current_dag,
)

__version__ = "0.1.0"

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
