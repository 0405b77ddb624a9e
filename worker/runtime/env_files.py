"""`OUTBOX_X_FILE=/path` sets `OUTBOX_X` from that file: how compose secrets, Kubernetes Secret volumes and
systemd credentials hand a process its database URL, secret key and passwords without putting them in the
environment of everything it starts, or in `docker inspect`.

One trailing newline is dropped (editors and `echo` add one). Giving both `OUTBOX_X` and `OUTBOX_X_FILE` is an
error, as is a file that cannot be read: the message names the variable and the path, never the content.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PREFIX = "OUTBOX_"
SUFFIX = "_FILE"


class EnvFileError(ValueError):
    """An `OUTBOX_*_FILE` variable that cannot be honoured."""


def load_env_files(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Fill every `OUTBOX_X` named by an `OUTBOX_X_FILE`; returns the names filled."""
    env = os.environ if environ is None else environ
    filled = []
    for key in sorted(k for k in env if k.startswith(PREFIX) and k.endswith(SUFFIX) and len(k) > len(PREFIX + SUFFIX)):
        target = key[: -len(SUFFIX)]
        path = env[key]
        if target in env:
            raise EnvFileError(f"{key}: {target} is set too; give one of them")
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read()
        except OSError as exc:
            raise EnvFileError(f"{key}: cannot read {path} ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise EnvFileError(f"{key}: {path} is not UTF-8 text") from None
        value = value[:-1] if value.endswith("\n") else value
        if value.endswith("\r"):
            value = value[:-1]
        if not value:
            raise EnvFileError(f"{key}: {path} is empty")
        env[target] = value
        filled.append(target)
    return filled
