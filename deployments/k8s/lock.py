"""Write `deployments/k8s/requirements.lock`, the image's dependencies, from `pyproject.toml`.

The lock is `uv pip compile` of the project's runtime dependencies and its build backend (setuptools, so the
image installs the project with `--no-build-isolation` from locked files only) for CPython 3.11 on Linux x86_64,
wheels only, with the sha256 of every file. Its first line records a digest of what it was compiled from, so a
test can tell offline that it is out of date (tests/unit/test_deployment_image.py).

Run it after any change to `[project] dependencies`, `requires-python` or `[build-system] requires` (needs `uv`
and PyPI):

    .venv/bin/python deployments/k8s/lock.py
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = HERE / "requirements.lock"
PYTHON_VERSION = "3.11"
"""The image's Python (the Dockerfile's base image is python:3.11.x)."""
PLATFORM = "x86_64-manylinux_2_28"
"""The image's platform: Debian bookworm's glibc 2.36 runs manylinux_2_28 wheels."""
HEADER_PREFIX = "# derive-lock: "


def lock_inputs(pyproject: Path = PYPROJECT) -> dict[str, Any]:
    """What the lock is compiled from: the dependency lists of `pyproject.toml` and the target interpreter."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return {
        "dependencies": data["project"]["dependencies"],
        "requires-python": data["project"]["requires-python"],
        "build-system": data["build-system"]["requires"],
        "python": PYTHON_VERSION,
        "platform": PLATFORM,
    }


def lock_digest(pyproject: Path = PYPROJECT) -> str:
    """sha256 of `lock_inputs` in canonical JSON (key order and spacing fixed)."""
    canonical = json.dumps(lock_inputs(pyproject), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def lock_header(pyproject: Path = PYPROJECT) -> str:
    """The lock's first line."""
    return f"{HEADER_PREFIX}sha256={lock_digest(pyproject)} python={PYTHON_VERSION} platform={PLATFORM}"


def compile_lock(pyproject: Path = PYPROJECT) -> str:
    """The lock's text: the header, then `uv pip compile`'s pins with hashes."""
    build_requires = lock_inputs(pyproject)["build-system"]
    with tempfile.TemporaryDirectory() as tmp:
        build_in = Path(tmp) / "build-system.in"
        build_in.write_text("\n".join(build_requires) + "\n", encoding="utf-8")
        out = Path(tmp) / "requirements.lock"
        subprocess.run(
            [
                "uv",
                "pip",
                "compile",
                "--quiet",
                str(pyproject),
                str(build_in),
                "--python-version",
                PYTHON_VERSION,
                "--python-platform",
                PLATFORM,
                "--only-binary",
                ":all:",
                "--generate-hashes",
                "--no-header",
                "--no-annotate",
                "--output-file",
                str(out),
            ],
            check=True,
            cwd=pyproject.parent,
        )
        pins = out.read_text(encoding="utf-8")
    return (
        f"{lock_header(pyproject)}\n"
        "# The image's dependencies: do not edit; regenerate with `.venv/bin/python deployments/k8s/lock.py`.\n"
        "# Installed by deployments/k8s/Dockerfile with `pip install --require-hashes --no-deps --only-binary :all:`.\n"
        f"{pins}"
    )


def main() -> int:
    LOCK.write_text(compile_lock(), encoding="utf-8")
    print(f"wrote {LOCK.relative_to(ROOT)}: {lock_header()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
