"""The README's platform-team commands, run as written: every line of every ```sh berth-doctest
block, in order, against the loopback control plane.

Around them the test plays what the cluster would do by itself: the chart's operator pod (kwok's
pods run nothing) is `python -m berth_operator` with the chart's ServiceAccount token, started
after the block that installs the chart and stopped before the block that uninstalls it; a volume
for the examples' claim and a PodMonitor kind exist, as on a cluster with storage and Prometheus.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import subprocess
import sys

import helm_harness
import local_install
from kube_control_plane import ControlPlane

README = helm_harness.REPO / "README.md"
BLOCK = re.compile(r"^```sh berth-doctest\n(.*?)^```", re.M | re.S)


def blocks(text: str) -> list[list[str]]:
    """Commands of each doc-test block: continuation lines joined, comments and blanks dropped."""
    found = []
    for body in BLOCK.findall(text):
        commands, current = [], ""
        for line in body.splitlines():
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
                continue
            command = (current + line).strip()
            current = ""
            if command and not command.startswith("#"):
                commands.append(command)
        found.append(commands)
    return found


def test_readme_has_doctest_blocks_for_every_platform_step() -> None:
    text = "\n".join(c for block in blocks(README.read_text()) for c in block)
    for step in (
        "helm install",
        "kubectl apply -n models",
        "canary",
        "berth promote",
        "berth rollback",
        "podmonitor",
        "helm uninstall",
    ):
        assert step in text, f"no doc-tested command for {step!r}"


def test_readme_platform_commands_run_as_written(
    control_plane: ControlPlane, tmp_path: pathlib.Path
) -> None:
    plane = control_plane
    plane.kubectl("apply", "--server-side", "-f", str(helm_harness.CRD_SOURCE))
    plane.kubectl("wait", "--for=condition=Established", f"crd/{helm_harness.CRD_NAME}")
    local_install.prepare_cluster_services(plane)
    local_install.models_volume(plane, "models")
    env = dict(plane.env)
    env["PATH"] = f"{env['PATH']}{os.pathsep}{pathlib.Path(sys.executable).parent}"
    with contextlib.ExitStack() as stack:
        operator: helm_harness.OperatorProcess | None = None
        for commands in blocks(README.read_text()):
            if operator is not None and any(c.startswith("helm uninstall") for c in commands):
                stack.close()
                operator = None
            for command in commands:
                result = subprocess.run(
                    ["bash", "-c", command],
                    cwd=helm_harness.REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                log = operator.log() if operator else ""
                assert result.returncode == 0, (
                    f"README command failed: {command}\n{result.stdout}\n{result.stderr}\n{log}"
                )
            if any(c.startswith("helm install") for c in commands):
                operator = stack.enter_context(local_install.operator_as_chart(plane, tmp_path))
    plane.delete_namespace("models")
