"""Fixtures for the chart, image and documentation tests: helm's environment, a rendered chart."""

from __future__ import annotations

import os
import pathlib

import helm_harness
import pytest


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for helm without a cluster: its cache/config/data kept out of $HOME."""
    if not os.access(helm_harness.helm_binary(), os.X_OK):
        pytest.fail(f"no helm in {helm_harness.helm_binary().parent}: run `make k8s-bins`")
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for kind in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{kind}_HOME"] = str(home / kind.lower())
    env.pop("KUBECONFIG", None)
    return env


@pytest.fixture
def log_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "operator.log"
