"""An operator restarted in the middle of a rollout picks it up from the stored status."""

from __future__ import annotations

import waiting
from kube_control_plane import ControlPlane
from operator_harness import (
    Operator,
    apply,
    backend_weights,
    merge_patch,
    model_deployment,
    wait_ready,
    wait_status,
)


def test_an_operator_restarted_mid_rollout_converges(
    control_plane: ControlPlane, namespace: str, berth_operator: Operator
) -> None:
    apply(control_plane, namespace, model_deployment("fraud", replicas=2))
    wait_ready(control_plane, namespace, "fraud")
    merge_patch(
        control_plane, namespace, "md", "fraud", {"spec": {"canary": {"version": 2, "weight": 10}}}
    )
    first = wait_status(
        control_plane, namespace, "fraud", lambda s: "canary" in s, what="canary started"
    )

    berth_operator.stop()
    merge_patch(control_plane, namespace, "md", "fraud", {"spec": {"canary": {"weight": 40}}})
    berth_operator.start()

    md = wait_status(
        control_plane,
        namespace,
        "fraud",
        lambda s: s.get("weight") == 40 and s.get("canary", {}).get("readyReplicas") == 1,
        what="weight 40 on a ready canary after the restart",
    )
    assert md["status"]["canary"]["since"] == first["status"]["canary"]["since"]
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"]
    waiting.wait_for(
        lambda: (
            backend_weights(control_plane, namespace, "fraud-http")
            == {"fraud-stable": 60, "fraud-canary": 40}
        ),
        timeout_seconds=30,
        message="60/40 split",
        interval_seconds=0.5,
    )
    wait_ready(control_plane, namespace, "fraud")
