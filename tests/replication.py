"""A PostgreSQL primary and a streaming standby of a test's own, on 127.0.0.1, for failover tests.

Made with the binaries of the embedded `pgserver` package (so it works on a bare machine): `initdb` for
the primary, `pg_basebackup -R` for the standby, synchronous replication (the primary's
`synchronous_standby_names` names the standby's `application_name`), so a commit acknowledged to a
client with `synchronous_commit = on` is on both. Run as root, the servers run as pgserver's own
system user (PostgreSQL refuses root), as pgserver itself does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.support import free_port

STANDBY_NAME = "standby1"


def _bin_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import _commands

    return Path(_commands.POSTGRES_BIN_PATH)


def _system_user(folder: Path) -> str | None:
    """Who runs the servers: None (ourselves), or pgserver's user when we are root."""
    if os.geteuid() != 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver import utils

    utils.ensure_user_exists("pgserver")
    utils.ensure_prefix_permissions(folder)
    utils.ensure_prefix_permissions(_bin_dir())
    folder.chmod(0o777)
    return "pgserver"


@dataclass
class Cluster:
    """One PostgreSQL server: its data directory, port and log."""

    name: str
    data: Path
    port: int
    log: Path
    bin: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=2"

    def run(self, tool: str, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            [str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=self.user,
        )
        if result.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {result.stdout}{result.stderr}\n{log}")
        return result.stdout

    def ctl(self, *args: str, timeout: float = 60) -> str:
        return self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), *args, timeout=timeout)

    def start(self) -> None:
        self.ctl("-w", "-t", "30", "start")

    def kill(self) -> None:
        """The server dies at once: no checkpoint, no goodbye to clients (`pg_ctl stop -m immediate`)."""
        self.ctl("-w", "-m", "immediate", "stop")

    def promote(self) -> None:
        self.ctl("-w", "-t", "30", "promote")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def stop_quietly(self) -> None:
        if self.running():
            with contextlib.suppress(Exception):
                self.ctl("-w", "-m", "immediate", "stop", timeout=30)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, **kwargs)

    def in_recovery(self) -> bool:
        with self.connect() as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    def configure(self, settings: dict[str, str | int], file: str = "postgresql.conf") -> None:
        """Settings appended to postgresql.conf (later lines win; postgresql.auto.conf wins over it)."""
        lines = [f"{name} = {_quoted(value)}" for name, value in settings.items()]
        with (self.data / file).open("a") as conf:
            conf.write("\n" + "\n".join(lines) + "\n")


def _quoted(value: str | int) -> str:
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


class ReplicatedPostgres:
    """A primary and a streaming standby (synchronous unless `synchronous=False`), under `folder`."""

    def __init__(self, folder: Path, *, synchronous: bool = True) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        binaries = _bin_dir()
        user = _system_user(folder)
        self.primary = Cluster("primary", folder / "primary", free_port(), folder / "primary.log", binaries, user)
        self.standby = Cluster("standby", folder / "standby", free_port(), folder / "standby.log", binaries, user)
        self.synchronous = synchronous

    def start(self) -> ReplicatedPostgres:
        primary, standby = self.primary, self.standby
        for cluster in (primary, standby):
            cluster.log.touch()
            if cluster.user is not None:
                _chown(cluster.log, cluster.user)
        primary.run(
            "initdb", "-D", str(primary.data), "-U", "postgres", "--auth=trust", "--encoding=utf8", "--no-sync"
        )  # fmt: skip
        common: dict[str, str | int] = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            "max_connections": 100,
            "wal_level": "replica",
            "max_wal_senders": 5,
            "wal_keep_size": "256MB",
            "fsync": "off",  # the servers' own durability is not what is tested: a kill does not lose the OS cache
            "log_line_prefix": "%m [%p] %a ",
        }
        primary.configure({**common, "port": primary.port})
        primary.start()
        primary.run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D", str(standby.data),
            "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
        )  # fmt: skip
        # The standby connects as STANDBY_NAME; promoted, it has no standby of its own to wait for.
        standby.configure(
            {
                "port": standby.port,
                "primary_conninfo": f"host=127.0.0.1 port={primary.port} user=postgres application_name={STANDBY_NAME}",
                "synchronous_standby_names": "",
                "hot_standby": "on",
            },
            "postgresql.auto.conf",  # after what pg_basebackup -R wrote there
        )
        standby.start()
        if self.synchronous:
            with primary.connect() as conn:
                conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
                conn.execute("SELECT pg_reload_conf()")
        self.wait_streaming()
        return self

    def wait_streaming(self, timeout: float = 30) -> None:
        """Until the primary streams to the standby (synchronously, when so configured)."""
        wanted = "sync" if self.synchronous else "async"
        deadline = time.monotonic() + timeout
        while True:
            with self.primary.connect() as conn:
                row = conn.execute(
                    "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s", (STANDBY_NAME,)
                ).fetchone()
            if row == ("streaming", wanted):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the standby does not stream ({row}): {self.standby.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def url(self, **params: str | int) -> str:
        """ONE URL naming both servers (primary first), as an installation with failover configures it."""
        query = "&".join(f"{name}={value}" for name, value in params.items())
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/postgres" + (f"?{query}" if query else "")

    def close(self) -> None:
        for cluster in (self.standby, self.primary):
            cluster.stop_quietly()


def _chown(path: Path, user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
