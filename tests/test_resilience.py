"""PostgreSQL stopped and started under a running worker: the worker waits, reconnects, loses nothing."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import outbox
from tests.support import Receiver, WorkerProcess, count_delivered, enqueue, subscribe, wait_until, zaak_event


class RestartablePostgres:
    """A PostgreSQL of this test's own (embedded pgserver), so stopping it disturbs nobody else."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver import _commands

        self._pg_ctl = _commands.pg_ctl
        self.folder = Path(tempfile.mkdtemp(prefix="outbox-restart-"))
        self.server: Any = pgserver.get_server(self.folder / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
        self.url = str(self.server.get_uri())

    def _ctl(self, *args: str) -> None:
        self._pg_ctl(["-w", *args], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:
        # restart on a stopped server starts it with the options it last ran with (postmaster.opts)
        self._ctl("restart")

    def close(self) -> None:
        # The server a test restarted with pg_ctl is not the one pgserver started: stop it ourselves.
        with contextlib.suppress(Exception):
            self.stop()
        try:
            self.server.cleanup()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[RestartablePostgres]:
    pg = RestartablePostgres()
    try:
        outbox.migrate(pg.url)
        yield pg
    finally:
        pg.close()


def test_postgres_restart_under_a_running_worker_loses_nothing(postgres: RestartablePostgres, tmp_path: Path) -> None:
    with Receiver(answer=lambda n, r: (204, {}, 0.3)).running() as receiver:
        subscribe(postgres.url, receiver.url)
        before = [zaak_event(str(uuid.uuid4()), n) for n in range(40)]
        enqueue(postgres.url, before)
        worker = WorkerProcess(postgres.url, tmp_path / "worker.log")
        try:
            wait_until(lambda: len(receiver.received) >= 5, message="deliveries under way")
            postgres.stop()  # results of the deliveries in flight cannot be written now
            worker.wait_logged("database unreachable, retrying")
            time.sleep(1.5)
            assert worker.process.poll() is None, "the worker must wait, not crash"
            postgres.start()
            worker.wait_logged("database reachable again", timeout=30)
            after = [zaak_event(str(uuid.uuid4()), n) for n in range(10)]
            enqueue(postgres.url, after)
            wait_until(lambda: count_delivered(postgres.url) == 50, timeout=60, message="all 50 delivered")
            assert set(receiver.ids()) == {e.id for e in before + after}
            with psycopg.connect(postgres.url) as conn:
                states = conn.execute("SELECT status, count(*) FROM outbox.deliveries GROUP BY status").fetchall()
            assert states == [("delivered", 50)]
            assert worker.terminate() == 0
        finally:
            worker.stop_quietly()
        events = [line["event"] for line in worker.logs()]
        assert events.count("database unreachable, retrying") == 1, "one line per state change"
        assert "listen connection re-established" in events


def test_sigterm_while_postgres_is_down_still_exits_0(postgres: RestartablePostgres, tmp_path: Path) -> None:
    with Receiver(answer=lambda n, r: (204, {}, 0.2)).running() as receiver:
        subscribe(postgres.url, receiver.url)
        enqueue(postgres.url, [zaak_event(str(uuid.uuid4()), n) for n in range(20)])
        worker = WorkerProcess(postgres.url, tmp_path / "worker.log", {"OUTBOX_SHUTDOWN_GRACE": "2"})
        try:
            wait_until(lambda: len(receiver.received) >= 3, message="deliveries under way")
            postgres.stop()
            worker.wait_logged("database unreachable, retrying")
            began = time.monotonic()
            assert worker.terminate(timeout=20) == 0
            assert time.monotonic() - began < 10
        finally:
            worker.stop_quietly()
            postgres.start()
        events = [line.get("event") for line in worker.logs()]
        assert "worker stopped" in events
