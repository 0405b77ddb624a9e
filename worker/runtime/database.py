"""Which PostgreSQL the commands talk to.

`--database-url` or `OUTBOX_DATABASE_URL` (a libpq URL) when given; otherwise
an embedded PostgreSQL (the `pgserver` package) with its data in
`OUTBOX_DATA_DIR` (default `.outbox/pgdata`), so a new user needs nothing
installed. The embedded server is shared by every command that uses the same
data folder and stops when the last of them exits.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(".outbox") / "pgdata"


@contextlib.contextmanager
def embedded_server(data_dir: Path) -> Iterator[Any]:
    """Start (or join) the embedded PostgreSQL in `data_dir`."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.cleanup()


@contextlib.contextmanager
def database_url(explicit: str | None, data_dir: Path = DEFAULT_DATA_DIR) -> Iterator[str]:
    """The URL to use, starting the embedded server for the duration if no URL was given."""
    if explicit:
        yield explicit
        return
    with embedded_server(data_dir) as server:
        yield str(server.get_uri())
