"""DAG workflows: durable runs of a graph of tasks, driven by supervised actors.

Build a `DAG` as pure data (``dag.step(task, *args)``; a step passed as an argument feeds its
result), submit it with ``client.submit(dag)`` and await results from any process with
``client.dag_run(id).result(step)``. A run's state lives in the app's DAG bucket, written only
by compare-and-set; workers record each step's outcome before they ack its task message; the
app's one DAG scheduler (a leader-elected actor on the workers) follows every live run with a
`DagActor` and dispatches steps as they become ready. See ``docs/dags.md``.
"""

from __future__ import annotations

from .._errors import (
    StepCancelled as StepCancelled,
    StepFailed as StepFailed,
    StepSkipped as StepSkipped,
)
from .._util import fixup_module_metadata as _fixup_module_metadata
from ._builder import DAG as DAG, OrDefault as OrDefault, SignalRef as SignalRef, Step as Step
from ._model import (
    ArgRef as ArgRef,
    RunInfo as RunInfo,
    RunStatus as RunStatus,
    SignalInfo as SignalInfo,
    StepError as StepError,
    StepInfo as StepInfo,
    StepStatus as StepStatus,
)
from ._run import DagRun as DagRun
from ._scheduler import DagScheduler as DagScheduler
from ._settings import DagSettings as DagSettings
from ._steps import DagContext as DagContext, current_dag as current_dag

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
