"""`OUTBOX_X_FILE` settings (compose secrets, Kubernetes Secret volumes): read into `OUTBOX_X` before the command
line is parsed; a missing file or both forms given stop the command with one line that never shows a value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker.runtime.env_files import EnvFileError, load_env_files


def test_a_file_fills_its_variable_without_the_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("postgresql://outbox:s3cret@db/outbox\n")
    env = {"OUTBOX_DATABASE_URL_FILE": str(tmp_path / "url"), "OTHER_FILE": "/nope", "OUTBOX_FILE": "/nope"}
    assert load_env_files(env) == ["OUTBOX_DATABASE_URL"]
    assert env["OUTBOX_DATABASE_URL"] == "postgresql://outbox:s3cret@db/outbox"


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, {}, "OUTBOX_SECRET_KEY_FILE: cannot read {path} (No such file or directory)"),
        ("", {}, "OUTBOX_SECRET_KEY_FILE: {path} is empty"),
        (
            "k3y",
            {"OUTBOX_SECRET_KEY": "other"},
            "OUTBOX_SECRET_KEY_FILE: OUTBOX_SECRET_KEY is set too; give one of them",
        ),
    ],
)
def test_bad_files_are_one_line_naming_the_variable(
    tmp_path: Path, content: str | None, extra: dict[str, str], message: str
) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    env = {"OUTBOX_SECRET_KEY_FILE": str(path), **extra}
    with pytest.raises(EnvFileError) as raised:
        load_env_files(env)
    assert str(raised.value) == message.format(path=path)
    assert "k3y" not in str(raised.value) and "other" not in str(raised.value)


def test_the_command_reads_the_file_and_stops_with_one_line_when_it_cannot(tmp_path: Path) -> None:
    (tmp_path / "schema").write_text("not a valid schema name!\n")
    bad = subprocess.run(
        [sys.executable, "-m", "worker", "status"],
        capture_output=True,
        text=True,
        check=False,
        env={"OUTBOX_SCHEMA_FILE": str(tmp_path / "schema"), "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2 and "schema" in bad.stderr.lower()  # the value reached the option's own check
    missing = subprocess.run(
        [sys.executable, "-m", "worker", "status"],
        capture_output=True,
        text=True,
        check=False,
        env={"OUTBOX_DATABASE_URL_FILE": str(tmp_path / "absent"), "PATH": "/usr/bin:/bin"},
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"outbox: OUTBOX_DATABASE_URL_FILE: cannot read {tmp_path / 'absent'} (No such file or directory)"
    ]
