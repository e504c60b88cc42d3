"""The actor runtime: mailboxes, references, supervisors.

A generic toolkit that knows nothing of tasks, brokers or NATS: actorq builds its Worker,
queues, slots and bridge with it, and applications can build their own actors on it too. An
actor is an object with ``async def run(self, *, task_status)`` started by ``nursery.start``;
it owns a bounded mailbox (`open_mailbox`) and hands out an `ActorRef`. Supervisors start,
restart and stop actors with Erlang/OTP's strategies. See ``docs/actors.md``.
"""

from __future__ import annotations

from .._errors import (
    ActorError as ActorError,
    ActorGone as ActorGone,
    AskTimeout as AskTimeout,
    MailboxFull as MailboxFull,
    SupervisorGaveUp as SupervisorGaveUp,
)
from .._util import fixup_module_metadata as _fixup_module_metadata
from ._child import ChildInfo as ChildInfo, ChildState as ChildState
from ._control import SupervisorStatistics as SupervisorStatistics
from ._dynamic import DynamicSupervisor as DynamicSupervisor
from ._mailbox import (
    ActorRef as ActorRef,
    Inbox as Inbox,
    MailboxStatistics as MailboxStatistics,
    Overflow as Overflow,
    open_mailbox as open_mailbox,
)
from ._policy import (
    ChildSpec as ChildSpec,
    Restart as Restart,
    Shutdown as Shutdown,
    Strategy as Strategy,
    SupervisorPolicy as SupervisorPolicy,
)
from ._reply import Reply as Reply
from ._stop import StopSignal as StopSignal, current_stop_signal as current_stop_signal
from ._supervisor import Supervisor as Supervisor

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
