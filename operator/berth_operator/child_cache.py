"""What of a live child the reconciler keeps in memory: kopf's indexes hold one per child.

Everything the reconciler reads stays (`drift`, `tracks`, `configfiles`, `route_status`), except
`metadata.managedFields`: the API server's record of which manager set which field, often as
large as the spec itself, on every child. Of it the operator needs one fact, whether its own
apply still holds a Deployment's `spec.replicas` (`autoscaling.handover`); the entry that says
so is kept, reduced to that field. Measured with 1,000 ModelDeployments: bench.operator_scale.
"""

import copy
from collections.abc import Mapping
from typing import Any

from berth_operator import autoscaling

Manifest = dict[str, Any]


def slim(body: Mapping[str, Any]) -> Manifest:
    """A deep copy of `body` without managedFields, but for the operator's replicas claim."""
    meta = body.get("metadata") or {}
    kept = [
        {**{k: entry[k] for k in ("manager", "operation")}, "fieldsV1": autoscaling.REPLICAS_FIELD}
        for entry in meta.get("managedFields") or ()
        if autoscaling.holds_replicas(entry)
    ]
    slimmed = {k: v for k, v in meta.items() if k != "managedFields"}
    if kept:
        slimmed["managedFields"] = kept
    return copy.deepcopy({**body, "metadata": slimmed})
