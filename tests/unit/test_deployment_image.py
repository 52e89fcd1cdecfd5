"""The promises of deployments/k8s/Dockerfile that hold without a container engine (there is none here).

A pinned base, dependencies only from `requirements.lock` (in sync with pyproject.toml, hashes, no test packages),
a numeric non-root user, the specs baked in where `DERIVE_SPECS_DIR` says, the module the chart starts importable,
and nothing secret or local in the build context (`.dockerignore`) or the image's environment.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deployments" / "k8s"
DOCKERFILE = K8S / "Dockerfile"
LOCK = K8S / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("derive_k8s_lock", K8S / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            joined.append(current.strip())
        current = ""
    result = []
    for line in joined:
        instruction, _, args = line.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result


def _stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (each starts at a FROM); ARGs before the first FROM are stage 0."""
    stages: list[list[tuple[str, str]]] = [[]]
    for instruction in _instructions(text):
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The ENV of a stage (`ENV A=1 B=2` form)."""
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            for word in shlex.split(args):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def _lock_pins(text: str) -> dict[str, tuple[Version, int]]:
    """{canonical name: (version, number of hashes)} of a `--generate-hashes` requirements file."""
    pins: dict[str, tuple[Version, int]] = {}
    for entry in re.split(r"\n(?=\S)", text):
        if entry.startswith("#") or not entry.strip():
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", entry)
        assert match, f"requirements.lock: not a pinned requirement: {entry[:80]!r}"
        pins[canonicalize_name(match[1])] = (Version(match[2]), entry.count("--hash=sha256:"))
    return pins


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` (relative, with /) out of the build context: the last pattern matching the path
    or one of its parent directories decides; `!` patterns re-include; `**` spans directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            verdict = not negate
    return verdict


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


DOCKER_TEXT = DOCKERFILE.read_text(encoding="utf-8")
STAGES = _stages(DOCKER_TEXT)
FINAL = STAGES[-1]
LOCK_TEXT = LOCK.read_text(encoding="utf-8")


def test_the_base_image_is_a_full_python_version_tag_of_the_locked_python():
    args = dict(a.split("=", 1) for i, a in STAGES[0] if i == "ARG" and "=" in a)
    base = args.get("PYTHON_IMAGE", "")
    match = re.fullmatch(r"python:(3\.\d+)\.(\d+)-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    assert match, (
        f"the base image {base!r} must be a full version tag, python:3.11.N-slim-bookworm[@sha256:...]"
    )
    assert match[1] == _lock_module().PYTHON_VERSION  # the lock is compiled for the image's interpreter
    assert Version(f"{match[1]}.{match[2]}") in SpecifierSet(PYPROJECT["project"]["requires-python"])
    froms = [args for stage in STAGES[1:] for i, args in stage if i == "FROM"]
    assert froms and all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms), froms


def test_dependencies_are_installed_only_from_the_lock_with_hashes_then_the_project_without_deps():
    runs = [args for stage in STAGES for i, args in stage if i == "RUN" and "pip install" in args]
    assert len(runs) == 2, runs
    locked, project = (shlex.split(run.split("&&")[0]) for run in runs)
    assert {"--require-hashes", "--no-deps", "--only-binary"} <= set(locked)
    assert locked[locked.index("-r") + 1] == "deployments/k8s/requirements.lock"
    copies = [args.split() for stage in STAGES for i, args in stage if i == "COPY"]
    assert ["deployments/k8s/requirements.lock", "deployments/k8s/requirements.lock"] in copies
    assert "--no-deps" in project and "--no-build-isolation" in project  # setuptools comes from the lock too
    targets = [word for word in project[2:] if not word.startswith("-")]
    assert targets == ["."], f"the project is installed as `.`, without extras: {targets}"
    assert "pip check" in runs[1]  # the build fails if the lock misses a dependency of the project


def test_the_lock_is_in_sync_with_pyproject():
    lock = _lock_module()
    header = LOCK_TEXT.splitlines()[0]
    assert header == lock.lock_header(), (
        "deployments/k8s/requirements.lock was compiled from other dependency lists than pyproject.toml's now: "
        "run `.venv/bin/python deployments/k8s/lock.py`"
    )
    pins = _lock_pins(LOCK_TEXT)
    assert all(hashes >= 1 for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if h == 0]
    direct = [
        Requirement(r) for r in PYPROJECT["project"]["dependencies"] + PYPROJECT["build-system"]["requires"]
    ]
    for requirement in direct:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (requirement, pins[name][0])
        for extra in requirement.extras:  # e.g. psycopg[binary] -> psycopg-binary
            for needed in importlib.metadata.requires(requirement.name) or []:
                wanted = Requirement(needed)
                if wanted.marker and wanted.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(wanted.name) in pins, (
                        f"{requirement}: {wanted.name} is not locked"
                    )


def test_the_lock_has_no_test_only_package():
    test_only = {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["test"]
    }
    assert test_only, "pyproject.toml has no test extra to compare with"
    assert not test_only & set(_lock_pins(LOCK_TEXT)), sorted(test_only & set(_lock_pins(LOCK_TEXT)))


def test_the_image_runs_as_a_numeric_unprivileged_user():
    users = [args for i, args in FINAL if i == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    match = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert match, f"USER {users[-1]!r}: numeric, so Kubernetes `runAsNonRoot` can check it"
    uid = int(match[1])
    assert uid != 0 and (match[2] is None or int(match[2]) != 0)
    assert any(i == "RUN" and f"--uid {uid}" in args for i, args in FINAL), "the user is created in the image"
    values = yaml.safe_load((K8S / "values.yaml").read_text(encoding="utf-8"))
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["podSecurityContext"]["runAsUser"] == uid  # the chart's pod asks for the image's user


def test_the_specs_are_baked_in_where_derive_looks_for_them():
    copies = [args.split() for i, args in FINAL if i == "COPY" and not args.startswith("--from")]
    specs = [dest for src, dest in copies if src == "table_specs"]
    assert specs, "the final stage does not COPY table_specs"
    assert _env(FINAL)["DERIVE_SPECS_DIR"] == specs[0]
    spec_files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "table_specs").rglob("*.yaml")]
    patterns = _dockerignore()
    assert spec_files and not [p for p in spec_files if _ignored(p, patterns)]


def test_the_project_files_pip_needs_are_copied_before_it_installs():
    build = next(stage for stage in STAGES[1:] if any("pip install" in args for _, args in stage))
    copied = {src for i, args in build if i == "COPY" for src in args.split()[:-1]}
    needed = {
        "pyproject.toml",
        PYPROJECT["project"]["readme"],
        *PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"],
    }
    assert {n.rstrip("*") for n in needed} <= copied, sorted({n.rstrip("*") for n in needed} - copied)
    patterns = _dockerignore()
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        files = (
            [source]
            if (ROOT / source).is_file()
            else [
                p.relative_to(ROOT).as_posix()
                for p in (ROOT / source).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            ]
        )
        assert not [f for f in files if _ignored(f, patterns)], f"COPY {source}: .dockerignore leaves it out"


def test_the_build_context_leaves_out_local_state_tests_and_secrets():
    patterns = _dockerignore()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        ".derive/warehouse.duckdb",
        ".derive/dagster_home/dagster.yaml",
        "tests/unit/test_deployment_image.py",
        "benchmarks/results/run.json",
        ".env",
        "deployments/k8s/prod.env",
        "deployments/k8s/.env.production",
        "deployments/k8s/tls.key",
        "ca.pem",
        "gcp-credentials.json",
        "derive_assets/__pycache__/settings.cpython-311.pyc",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in (
        "pyproject.toml",
        "README.md",
        "derive_assets/settings.py",
        "table_specs/sources/orders.yaml",
    ):
        assert not _ignored(path, patterns), path


def test_the_image_holds_no_secret_in_its_environment_or_build_args():
    for stage in STAGES:
        names = set(_env(stage)) | {args.split("=")[0] for i, args in stage if i == "ARG"}
        assert not [n for n in names if re.search(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY\b|_URL\b", n)], (
            names
        )
        assert not [v for v in _env(stage).values() if "://" in v], "a URL in ENV may carry a password"
    assert not re.search(r"(?im)^\s*COPY\s+(\.|\S*\.env|\S*\.pem|\S*\.key|\.derive)\s", DOCKER_TEXT)


def test_the_entrypoint_is_the_module_and_port_the_chart_starts():
    (cmd,) = [json.loads(args) for i, args in FINAL if i == "CMD"]
    assert cmd[:3] == ["dagster", "api", "grpc"]
    module, port = cmd[cmd.index("-m") + 1], cmd[cmd.index("-p") + 1]
    values = yaml.safe_load((K8S / "values.yaml").read_text(encoding="utf-8"))
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", module]
    assert str(deployment["port"]) == port and [a for i, a in FINAL if i == "EXPOSE"] == [port]
    assert importlib.util.find_spec(module) is not None


@pytest.mark.slow
def test_the_entrypoint_module_loads_definitions_with_the_image_environment(tmp_path):
    """`dagster api grpc -m derive_assets.definitions` as the image runs it: the Dockerfile's ENV, the settings
    ConfigMap of secrets.template.yaml, placeholders for the Secrets (paths moved under tmp_path)."""
    settings = next(
        doc
        for doc in yaml.safe_load_all((K8S / "secrets.template.yaml").read_text(encoding="utf-8"))
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "derive-settings"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DERIVE_", "DAGSTER_"))},
        **_env(FINAL),
        **settings["data"],
        "DERIVE_SPECS_DIR": str(ROOT / "table_specs"),
        "DERIVE_HOME": str(tmp_path / "derive"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DERIVE_CASSANDRA_PASSWORD": "placeholder",
    }
    (cmd,) = [json.loads(args) for i, args in FINAL if i == "CMD"]
    module = cmd[cmd.index("-m") + 1]
    code = (
        f"import {module} as m, dagster; d = m.defs; assert isinstance(d, dagster.Definitions); "
        "print(d.resolve_job_def('core_job').executor_def.name, d.resources['warehouse'].kind, "
        "d.resources['online_store'].kind)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["k8s", "bigquery", "cassandra"]
