"""What the real-pod scenarios do as users do it: install the chart, apply ModelDeployments, wait
for what kubectl shows, and call the servers over REST and gRPC through their Services.

Everything goes through `kubectl` and `helm` with the control plane's kubeconfig, and requests go
to ClusterIPs (kube-proxy's rules) or pod IPs, as a client inside the cluster would send them.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import urllib.error
import urllib.request
from typing import Any

import grpc
import waiting
from kube_control_plane import ControlPlane
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "berth"
SERVER_IMAGE = "berth.local/berth-server:dev"
OPERATOR_IMAGE = "berth.local/berth-operator"
OPERATOR_TAG = "dev"
RELEASE = "berth"
RELEASE_NAMESPACE = "berth-system"
ROLLOUT_SECONDS = 300.0
"""Pods import TensorFlow and load a model on a 2-core node that other pods share."""
REQUEST_SECONDS = 10.0

Manifest = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Release:
    """The chart's release: its operator Deployment is `name` in `namespace`."""

    name: str
    namespace: str

    def log(self, plane: ControlPlane, lines: int = 120) -> str:
        return plane.kubectl(
            "logs", f"deploy/{self.name}", "-n", self.namespace, f"--tail={lines}", check=False
        ).stdout


def install_chart(plane: ControlPlane) -> Release:
    """`helm install` with the images built from this tree, then wait for the operator pod."""
    values = {
        "image": {"repository": OPERATOR_IMAGE, "tag": OPERATOR_TAG, "pullPolicy": "IfNotPresent"},
        "server": {"image": SERVER_IMAGE, "allowHostPath": True},
        "operator": {"resyncSeconds": 2},
    }
    args = [a for key, v in values.items() for a in ("--set-json", f"{key}={json.dumps(v)}")]
    subprocess.run(
        [
            str(plane.bin_dir / "helm"),
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            *args,
        ],
        env=plane.env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    release = Release(RELEASE, RELEASE_NAMESPACE)  # the chart names its objects after the release
    rollout(plane, RELEASE_NAMESPACE, release.name)
    return release


def rollout(plane: ControlPlane, namespace: str, deployment: str) -> None:
    """`kubectl rollout status`: every replica of the newest ReplicaSet updated and available."""
    plane.kubectl(
        "rollout",
        "status",
        f"deploy/{deployment}",
        "-n",
        namespace,
        f"--timeout={int(ROLLOUT_SECONDS)}s",
        timeout=ROLLOUT_SECONDS + 30,
    )


def apply(plane: ControlPlane, namespace: str, manifest: Manifest) -> None:
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def get(plane: ControlPlane, namespace: str, kind: str, name: str) -> Manifest | None:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def pods(plane: ControlPlane, namespace: str, selector: str) -> list[Manifest]:
    listed = plane.kubectl_json("get", "pods", "-n", namespace, "-l", selector)
    items: list[Manifest] = listed["items"]  # type: ignore[assignment]
    return items


def condition(obj: Manifest | None, kind: str) -> Manifest | None:
    for entry in (obj or {}).get("status", {}).get("conditions", []):
        if entry.get("type") == kind:
            return dict(entry)
    return None


def wait_condition(
    plane: ControlPlane,
    namespace: str,
    name: str,
    kind: str = "Ready",
    *,
    status: str = "True",
    timeout_seconds: float = ROLLOUT_SECONDS,
) -> Manifest:
    """Wait for the ModelDeployment's condition `kind` to have `status`; returns the condition."""

    def current() -> Manifest | None:
        return condition(get(plane, namespace, "modeldeployment", name), kind)

    found: Manifest = waiting.wait_for(
        current,
        timeout_seconds=timeout_seconds,
        interval_seconds=1.0,
        message=f"ModelDeployment {name} {kind}={status}",
        until=lambda c: c is not None and c.get("status") == status,
    )
    return found


def cluster_ip(plane: ControlPlane, namespace: str, service: str) -> str:
    found = get(plane, namespace, "service", service)
    assert found, f"no Service {service} in {namespace}"
    address: str = found["spec"]["clusterIP"]
    return address


def rest_predict(
    address: str, model: str, instances: list[float], *, port: int = 8501
) -> list[float]:
    """POST /v1/models/<model>:predict; returns the predictions, raises on any status but 200."""
    body = json.dumps({"instances": instances}).encode()
    request = urllib.request.Request(
        f"http://{address}:{port}/v1/models/{model}:predict", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as reply:
        predictions: list[float] = json.loads(reply.read())["predictions"]
    return predictions


def first_rest_predict(address: str, model: str, instances: list[float]) -> list[float]:
    """`rest_predict` through a Service that just became ready: kube-proxy programs its
    endpoints a moment after the pods turn Ready, and until then the Service refuses."""

    def attempt() -> list[float] | None:
        try:
            return rest_predict(address, model, instances)
        except urllib.error.URLError as error:
            if isinstance(error.reason, ConnectionRefusedError):
                return None
            raise

    answer: list[float] = waiting.wait_for(
        attempt,
        timeout_seconds=60,
        message=f"Service {address} to take connections",
        until=lambda a: a is not None,
    )
    return answer


def predict_request(
    model: str, inputs: dict[str, tensor_pb2.TensorProto]
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for name, tensor in inputs.items():
        request.inputs[name].CopyFrom(tensor)
    return request


def floats(values: list[float]) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        float_val=values,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
    )


class GrpcClient:
    """One channel to `address`:`port`, as a long-lived client holds it."""

    def __init__(self, address: str, *, port: int = 8500) -> None:
        self.channel = grpc.insecure_channel(f"{address}:{port}")
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def predict(self, model: str, instances: list[float]) -> tuple[int, list[float]]:
        """(the version that answered, its outputs)."""
        reply = self.stub.Predict(
            predict_request(model, {"x": floats(instances)}), timeout=REQUEST_SECONDS
        )
        return reply.model_spec.version.value, list(reply.outputs["y"].float_val)

    def close(self) -> None:
        self.channel.close()


def model_deployment(name: str, model: str, models_dir: pathlib.Path, **spec: Any) -> Manifest:
    """A ModelDeployment serving `models_dir/<model>` from the node's disk, sized for this node."""
    body: Manifest = {
        "model": {"name": model, "storage": {"hostPath": {"path": str(models_dir / model)}}},
        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        "traffic": {"provider": "none"},
    }
    body.update(spec)
    return {
        "apiVersion": "serving.berth.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": body,
    }


def reachable(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None
