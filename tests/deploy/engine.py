"""The container engine the deployment tests drive (podman, else docker), and the image they build.

Offline machines reach no registry: unless `OUTBOX_TEST_IMAGE_BASE` names a base image, the base is made from
Debian's packages with mmdebstrap (deploy/test/base-image.sh), so the project's own Dockerfile is what is tested.
Everything a test makes is removed by id or name; nothing broad is pruned.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


class EngineMissing(RuntimeError):
    pass


@dataclass
class Engine:
    name: str  # "podman" or "docker"
    made_images: list[str] = field(default_factory=list)

    @classmethod
    def find(cls) -> Engine:
        for name in ("podman", "docker"):
            if shutil.which(name) is None:
                continue
            try:
                ok = subprocess.run([name, "info"], capture_output=True, timeout=30, check=False).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                return cls(name)
        raise EngineMissing("make test-deploy: no container engine answers (install podman, or start docker)")

    def run(
        self, *args: str, check: bool = True, timeout: float = 600, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,  # type: ignore[call-overload]
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result  # type: ignore[no-any-return]

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists" if self.name == "podman" else "inspect", ref, check=False).returncode == 0

    def build(self, tag: str, base: str, *, ca_secret: bool = True, build_args: dict[str, str] | None = None) -> float:
        """Builds the repository's Dockerfile; returns the seconds it took."""
        args = ["build", "--network", "host", "--build-arg", f"BASE={base}", "-t", tag]
        if self.name == "podman":
            args.append("--layers=false")  # else the build stage stays behind as an untagged image
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        if ca_secret and CA_BUNDLE.is_file():
            args += ["--secret", f"id=ca,src={CA_BUNDLE}"]
        started = time.monotonic()
        self.run(*args, str(ROOT), timeout=1200)
        self.made_images.append(tag)
        return time.monotonic() - started

    def remove_container(self, name: str) -> None:
        self.run("rm", "--force", "--time", "0", name, check=False)

    def remove_made_images(self) -> None:
        for ref in reversed(self.made_images):
            self.run("rmi", "--force", ref, check=False)
        self.made_images.clear()


def base_image(engine: Engine) -> str:
    """The base to build on: OUTBOX_TEST_IMAGE_BASE, else one made from Debian's packages."""
    explicit = os.environ.get("OUTBOX_TEST_IMAGE_BASE")
    if explicit:
        return explicit
    ref = "localhost/nlgov-outbox-testbase:bookworm"
    if not engine.image_exists(ref):
        script = ROOT / "deploy" / "test" / "base-image.sh"
        result = subprocess.run(
            ["bash", str(script), ref],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env={**os.environ, "ENGINE": engine.name},
        )
        if result.returncode != 0:
            raise AssertionError(f"{script} failed:\n{result.stderr[-3000:]}")
        engine.made_images.insert(0, ref)
    return ref
