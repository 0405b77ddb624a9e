"""deploy/systemd/: the units pass `systemd-analyze verify`, score well on `systemd-analyze security`, and name
only variables the commands read.

verify needs each ExecStart binary to exist: the units are verified as temporary copies whose ExecStart names
this checkout's `outbox` (.venv/bin/outbox) instead of /opt/outbox/bin/outbox; nothing else is changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_manifests import known_variables

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = ("outbox-migrate.service", "outbox-run.service", "outbox-serve.service")
INSTALLED = "/opt/outbox/bin/outbox"
OUTBOX = Path(sys.executable).with_name("outbox")


def copies(folder: Path, edit: dict[str, str] | None = None) -> list[Path]:
    paths = []
    for name in UNITS:
        text = (SYSTEMD / name).read_text().replace(INSTALLED, str(OUTBOX))
        for old, new in (edit or {}).items():
            text = text.replace(old, new)
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths


def verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        cwd=paths[0].parent,
    )


def directives(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    assert OUTBOX.is_file()
    result = verify(copies(tmp_path))
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_verify_catches_a_fault(tmp_path: Path) -> None:
    """The check above has teeth: a misspelt directive fails it."""
    result = verify(copies(tmp_path, {"NoNewPrivileges=": "NoNewPrivilege="}))
    assert (
        "Unknown key 'NoNewPrivilege'" in result.stderr
    )  # a warning: verify still exits 0, hence the empty-stderr check


@pytest.mark.parametrize("name", UNITS)
def test_security_exposure_is_low(name: str, tmp_path: Path) -> None:
    copies(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(tmp_path / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    print(f"\n{name}: systemd-analyze security exposure {match[1]} {match[2]}")
    assert float(match[1]) <= 2.0  # 0 (best) … 10; "OK" is below 4


@pytest.mark.parametrize("name", ["outbox-run.service", "outbox-serve.service"])
def test_daemons_restart_and_stop_within_the_grace(name: str) -> None:
    unit = directives(name)
    assert unit["Restart"] == ["on-failure"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["DynamicUser"] == ["yes"]
    assert unit["EnvironmentFile"] == ["/etc/outbox/outbox.env"]
    assert unit["ExecStart"] == [f"{INSTALLED} {name.removeprefix('outbox-').removesuffix('.service')}"]
    env = dict(
        line.split("=", 1)
        for line in (SYSTEMD / "outbox.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    grace = float(env["OUTBOX_SHUTDOWN_GRACE"])
    assert float(unit["TimeoutStopSec"][0].removesuffix("s")) >= grace + 10
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service",
    }.items():
        assert unit[key] == [value], key


def test_the_env_example_names_only_variables_the_commands_read() -> None:
    names = {
        line.lstrip("#").split("=", 1)[0]
        for line in (SYSTEMD / "outbox.env.example").read_text().splitlines()
        if re.match(r"#?OUTBOX_[A-Z_]+=", line)
    }
    known = known_variables("run") | known_variables("serve") | known_variables("migrate")
    assert names and names <= known, sorted(names - known)
