"""Debian's `pgbouncer` (1.18) in transaction pooling mode in front of the test PostgreSQL, on a free
127.0.0.1 port: a generated ini and userlist in a folder of its own, stopped when the block ends.
Without the binary the tests that need it are skipped with one line."""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from tests.support import free_port

PGBOUNCER = shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if os.access(p, os.X_OK)), None)


def version() -> tuple[int, ...]:
    """PgBouncer's version (`pgbouncer --version`: "PgBouncer 1.18.0" on its first line)."""
    assert PGBOUNCER is not None
    first = subprocess.run([PGBOUNCER, "--version"], capture_output=True, text=True, check=True).stdout.split()
    return tuple(int(part) for part in first[1].split("."))


needs_pgbouncer = pytest.mark.skipif(
    PGBOUNCER is None, reason="needs PgBouncer: apt-get install pgbouncer (Debian's 1.18; .ci/run installs it)"
)


@dataclass
class PgBouncer:
    port: int
    user: str
    log_path: Path

    def url(self, database_url: str) -> str:
        """`database_url`'s database, through this PgBouncer."""
        dbname = conninfo.conninfo_to_dict(database_url).get("dbname") or "postgres"
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, command: str) -> list[dict[str, object]]:
        """A SHOW command on PgBouncer's admin console (it speaks the simple query protocol only)."""
        with (
            psycopg.connect(f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer", autocommit=True) as conn,
            psycopg.ClientCursor(conn, row_factory=psycopg.rows.dict_row) as cur,
        ):
            return cur.execute(command).fetchall()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextlib.contextmanager
def running(server_url: str, *, pool_size: int = 2) -> Iterator[PgBouncer]:
    """PgBouncer in front of the server of `server_url` (by host and port, or by its unix socket folder,
    as testcontainers, the machine's PostgreSQL or the embedded pgserver give it); every database name
    is passed through (`*`), logged in as the URL's user."""
    assert PGBOUNCER is not None
    params = conninfo.conninfo_to_dict(server_url)
    host = str(params.get("host") or "/var/run/postgresql")
    user = str(params.get("user") or getpass.getuser())
    server = {"host": host, "port": str(params.get("port") or 5432), "user": user}
    if params.get("password"):
        server["password"] = str(params["password"])
    folder = Path(tempfile.mkdtemp(prefix="outbox-pgbouncer-"))
    port = free_port()
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = {' '.join(f'{k}={_quote(v)}' for k, v in server.items())}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\nadmin_users = {user}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n"
        # Few servers for many clients: a transaction waits for one rather than failing.
        "query_wait_timeout = 30\nserver_lifetime = 3600\n"
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root: as the owner of the server's socket, else nobody
        owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "root"
        command[1:1] = ["-u", owner if owner != "root" else "nobody"]
        folder.chmod(0o755)
        for path in folder.iterdir():
            path.chmod(0o644)
    log_path = folder / "pgbouncer.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    bouncer = PgBouncer(port, user, log_path)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {bouncer.log()}") from None
                time.sleep(0.05)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
