"""The `outbox` command line: `main` is the console script, `cli` the click group."""

from worker.cli.main import Context, cli, main

__all__ = ["Context", "cli", "main"]
