"""`DagSettings`: how a worker takes part in running DAGs."""

from __future__ import annotations

import attrs


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen(kw_only=True)
class DagSettings:
    """How a worker takes part in running DAGs (``Worker(client, dags=DagSettings(...))``).

    Every worker records the outcomes of the DAG steps it runs. A worker with ``schedule``
    is also a candidate for the app's one DAG scheduler: the candidate elected leader follows
    every live run and dispatches its steps.

    Attributes:
        schedule: Campaign to be the app's DAG scheduler.
        sweep_interval: Seconds between sweeps of the leader: every live run is read afresh,
            what is ready is dispatched, phantom-running steps are looked for.
        leader_ttl: Seconds after which a scheduler that died is replaced.
        phantom_after: Seconds a running step may go without a sign of life (its dispatch, a
            noted retry) before the sweep checks that its task message still exists.
        phantom_scan_limit: Messages a sweep looks through to find one step's task message
            before it assumes the message is there.
    """

    schedule: bool = True
    sweep_interval: float = attrs.field(default=30.0, validator=_positive)
    leader_ttl: float = attrs.field(default=10.0, validator=attrs.validators.ge(1.0))
    phantom_after: float = attrs.field(default=60.0, validator=_positive)
    phantom_scan_limit: int = attrs.field(default=10_000, validator=attrs.validators.ge(1))
