"""A DAG workflow: a release that builds, tests and waits for an approval before it deploys.

    build ──┬── unit tests ──────────────┐
            ├── lint (optional) ─────────┼── deploy(approval signal) ── announce
            └── changelog (optional, fails)

The optional steps may fail without failing the run: ``lint`` feeds ``deploy`` through
``or_default``, so its failure would substitute a default; ``changelog`` always fails and
``announce`` uses its default text. ``deploy`` waits for the ``approval`` signal, sent here
by the script (in real life: by a person, through ``client.dag_run(id).signal(...)`` from any
process). A running step also adds a step of its own (``current_dag()``).

Run it with ``python examples/dag_workflow.py``: a worker (which is also the DAG scheduler)
and the producer in one process, on the in-process memory broker — no NATS needed. Point the
same code at NATS with ``actorq.connect(app, "nats://...")``.
"""

from __future__ import annotations

import logging

import attrs
import trio

import actorq
from actorq.testing import running_worker

app = actorq.App("release")


@attrs.frozen
class Build:
    version: str
    artifact: str


@attrs.frozen
class Approval:
    approver: str


# Explicit names: the same tasks whether the module runs as a script or is imported.
@app.task(name="release.build")
async def build(version: str) -> Build:
    return Build(version, f"app-{version}.tar.gz")


@app.task(name="release.unit_tests")
async def unit_tests(build: Build) -> int:
    await trio.sleep(0.1)
    return 128  # tests passed


@app.task(name="release.lint")
async def lint(build: Build) -> list[str]:
    return []  # no warnings


@app.task(name="release.changelog", retry=actorq.RetryPolicy.never())
async def changelog(build: Build) -> str:
    raise RuntimeError("the changelog service is down")


@app.task(name="release.deploy")
async def deploy(build: Build, passed: int, warnings: list[str], approval: Approval) -> str:
    # A step may add steps to its run: here, a smoke test after the deploy.
    await actorq.current_dag().step(smoke_test.options(step_id="smoke"), build.version)
    return f"{build.artifact} deployed ({passed} tests passed, approved by {approval.approver})"


@app.task(name="release.smoke_test")
async def smoke_test(version: str) -> bool:
    return True


@app.task(name="release.announce")
async def announce(deployed: str, notes: str) -> str:
    return f"{deployed}; notes: {notes}"


async def main() -> None:
    settings = actorq.DagSettings(sweep_interval=1.0, leader_ttl=2.0)
    async with (
        actorq.connect(app, "memory://release") as client,
        running_worker(client, concurrency=8, dags=settings),
    ):
        dag = actorq.DAG()
        built = dag.step(build, "1.4.0")
        tests = dag.step(unit_tests, built)
        warnings = dag.step(lint.options(optional=True), built)
        notes = dag.step(changelog.options(optional=True), built)
        deployed = dag.step(
            deploy, built, tests, warnings.or_default(["lint skipped"]), dag.signal_ref("approval")
        )
        final = dag.step(announce.options(step_id="announce"), deployed, notes.or_default("n/a"))
        run = await client.submit(dag)
        print(f"submitted run {run.id}: {', '.join(dag.steps)}")

        print(f"tests: {await run.result(tests)} passed; waiting for the approval signal")
        delivered = await run.signal("approval", Approval(approver="ada"))
        print(f"approval delivered: {delivered}; a second one is ignored:"
              f" {await run.signal('approval', Approval(approver='eve'))}")  # fmt: skip

        print(await run.result(final))
        print(f"smoke test (added by deploy): {await run.result('smoke')}")
        status = await run.wait()
        print(f"run {status}")
        for step in (await run.steps()).values():
            error = f" ({step.error.message})" if step.error else ""
            print(f"  {step.id:<20} {step.status:<8} attempts {step.attempts}{error}")
        assert status == actorq.RunStatus.DONE


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    trio.run(main)
