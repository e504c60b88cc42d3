"""Logging for ``actorq run``: stdlib logging, one line per record, for people or for machines.

A worker logs one line per task outcome (logger ``actorq.worker``) and its lifecycle (logger
``actorq.run``). People read the human format; log shippers want ``--json-logs``: one JSON
object per line with ``time``, ``level``, ``logger``, ``message``, ``pid`` and every field a
record carries in ``extra=`` (task id, task, attempt, duration...), so nothing has to be
parsed back out of a message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

HUMAN_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"
LEVELS = ("debug", "info", "warning", "error")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: the standard fields, then the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(level: str, *, json_logs: bool) -> None:
    """Send every record at ``level`` and above to standard error, one line each.

    Replaces the root logger's handlers, like a worker program is expected to; the app's own
    loggers propagate to it and come out in the same format.
    """
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(HUMAN_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
