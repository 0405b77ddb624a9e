"""One JSON line per event of interest, on standard error. Never a secret: callers log ids and URLs,
not `auth` values, and `redact` strips credentials from URLs."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from worker.runtime import tracing

logger = logging.getLogger("outbox.worker")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None:
            line["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(line, default=str, ensure_ascii=False)


def setup(level: str = "INFO") -> None:
    """JSON lines for everything the process logs (psycopg_pool, asyncio, ...), ours at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("outbox").setLevel(level.upper())
    # The pool says every failed reconnection; the worker already says the state change once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def log(level: int, event: str, **fields: Any) -> None:
    """One line; while the daemon traces (worker/runtime/tracing.py), with the active span's trace_id and
    span_id."""
    if tracing.tracer is not None:
        fields.update(tracing.log_fields())
    logger.log(level, event, extra={"fields": fields})


def redact(url: str) -> str:
    """A URL without user info or query string (either may carry a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    # The user info goes; the hosts stay as written: `.port` refuses a multi-host netloc (db1:5432,db2:5432).
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
