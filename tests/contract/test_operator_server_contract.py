"""The operator–server contract: the container the operator renders really serves its track.

Takes the rendered Deployments (command, args, env, volume mounts) and ConfigMap, lays the mounts
out on the local disk, rewrites only what a container's namespaces would have provided (mount
paths and the two ports), runs the command as a local process and queries it over REST and gRPC
with the official stubs. Nothing of the rendered command line is interpreted or re-typed here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import processes
import pytest
import store_emulators
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from berth_operator import render, spec
from examples import export_models

STABLE, CANARY = 123, 124  # export_two_versions: 0.5x + 2 and 0.5x + 3


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models") / "two_versions"
    export_models.export_two_versions(base, (STABLE, CANARY))
    return base


def rendered(model_dir: Path) -> dict[str, dict[str, Any]]:
    md = spec.parse(
        {
            "model": {"name": "two_versions", "storage": {"hostPath": {"path": str(model_dir)}}},
            "stable": {"version": STABLE},
            "canary": {"version": CANARY, "weight": 10},
            "batching": {"maxBatchSize": 8, "batchTimeoutMicros": 1000, "numBatchThreads": 2},
            "server": {"configPollSeconds": 1},
        }
    )
    owner = render.Owner(name="contract", namespace="ns", uid="uid")
    objs = render.children(md, owner, canary_on=True, weight=10)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objs}


class Container:
    """One rendered server container running as a local process."""

    def __init__(self, objs: dict[str, dict[str, Any]], track: str, root: Path,
                 secrets: dict[str, dict[str, str]] | None = None) -> None:
        """`secrets`: the Secrets the container's envFrom names, by name, as the kubelet reads
        them."""
        pod = objs[f"Deployment/contract-{track}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        self.container = container
        self.mounts = self._lay_out_mounts(pod, objs["ConfigMap/contract-config"], root)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.ports = {ports["grpc"]: processes.free_port(), ports["http"]: processes.free_port()}
        command = [
            shutil.which(container["command"][0], path=Path(sys.executable).parent)
            or container["command"][0]
        ]
        args = [self._local(arg) for arg in container["args"]]
        from_secrets = {
            name: value
            for source in container.get("envFrom", [])
            for name, value in (secrets or {})[source["secretRef"]["name"]].items()
        }
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **from_secrets,
            **{e["name"]: e["value"] for e in container.get("env", [])},
        }
        self.process = processes.start(
            [*command, *args], name=f"{track} server", log_path=root / "server.log", env=env
        )

    def _lay_out_mounts(
        self, pod: dict[str, Any], config_map: dict[str, Any], root: Path
    ) -> dict[str, Path]:
        """mountPath → local directory, as the kubelet would have provided them; ConfigMap files
        are written with container paths translated, as the files refer to the model's mount."""
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts: dict[str, Path] = {}
        for mount in self.container["volumeMounts"]:
            host_path = volumes[mount["name"]].get("hostPath")
            mounts[mount["mountPath"]] = (
                Path(host_path["path"]) if host_path else root / mount["name"]
            )
        for mount in self.container["volumeMounts"]:
            local = mounts[mount["mountPath"]]
            local.mkdir(parents=True, exist_ok=True)
            for item in volumes[mount["name"]].get("configMap", {}).get("items", []):
                text = config_map["data"][item["key"]]
                (local / item["path"]).write_text(self._local(text, mounts))
        return mounts

    def _local(self, text: str, mounts: dict[str, Path] | None = None) -> str:
        """Container paths (and, for command-line flags, ports) → their local equivalents."""
        table = mounts or self.mounts
        pattern = "|".join(re.escape(m) for m in sorted(table, key=len, reverse=True))
        text = re.sub(f"({pattern})(?=/|\\b|$)", lambda m: str(table[m.group(1)]), text)
        if mounts is None:
            for container_port, local_port in self.ports.items():
                text = text.replace(f"port={container_port}", f"port={local_port}")
        return text

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.ports[self.container['ports'][1]['containerPort']]}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports[self.container['ports'][0]['containerPort']]}"

    def wait_ready(self, timeout_seconds: float = 120) -> None:
        """Poll the rendered readiness probe's path, as the kubelet would."""
        probe = self.container["readinessProbe"]["httpGet"]["path"]
        self.process.wait_until(
            lambda: processes.http_status(self.rest + probe),
            until=lambda status: status == 200,
            timeout_seconds=timeout_seconds,
            message=f"readiness probe {probe} to answer 200",
        )

    def stop(self) -> None:
        self.process.stop(grace_seconds=30)


@pytest.fixture(scope="module")
def tracks(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Container]]:
    objs = rendered(model_dir)
    running = {t: Container(objs, t, tmp_path_factory.mktemp(t)) for t in ("stable", "canary")}
    try:
        for container in running.values():
            container.wait_ready()
        yield running
    finally:
        for container in running.values():
            container.stop()


def rest_predict(container: Container, model: str = "two_versions") -> list[float]:
    body = json.dumps({"instances": [1.0, 2.0, 5.0]}).encode()
    request = urllib.request.Request(
        f"{container.rest}/v1/models/{model}:predict",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        predictions: list[float] = json.loads(reply.read())["predictions"]
        return predictions


def grpc_predict(container: Container) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "two_versions"
    request.inputs["x"].CopyFrom(_tensor([1.0, 2.0, 5.0]))
    with grpc.insecure_channel(container.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = stub.Predict(request, timeout=30)
    return list(reply.outputs["y"].float_val)


def _tensor(values: list[float]) -> Any:
    import tensorflow as tf

    return tf.make_tensor_proto(values, shape=[len(values)], dtype=tf.float32)


def test_the_stable_container_serves_the_stable_version_over_rest_and_grpc(
    tracks: dict[str, Container],
) -> None:
    assert rest_predict(tracks["stable"]) == [2.5, 3.0, 4.5]
    assert grpc_predict(tracks["stable"]) == [2.5, 3.0, 4.5]


def test_the_canary_container_serves_the_canary_version(tracks: dict[str, Container]) -> None:
    assert rest_predict(tracks["canary"]) == [3.5, 4.0, 5.5]
    assert grpc_predict(tracks["canary"]) == [3.5, 4.0, 5.5]


def test_each_container_loads_only_its_own_version(tracks: dict[str, Container]) -> None:
    for track, version in (("stable", STABLE), ("canary", CANARY)):
        with urllib.request.urlopen(
            f"{tracks[track].rest}/v1/models/two_versions", timeout=30
        ) as r:
            status = json.loads(r.read())["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [(str(version), "AVAILABLE")]


def test_the_rendered_container_turns_batching_on_with_the_mounted_file(
    tracks: dict[str, Container],
) -> None:
    args = tracks["stable"].container["args"]
    assert "--enable_batching" in args
    batching = tracks["stable"].mounts["/etc/berth"] / "batching.config"
    assert "max_batch_size { value: 8 }" in batching.read_text()


@pytest.fixture(scope="module")
def bucket(model_dir: Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[store_emulators.S3Emulator]:
    """moto's S3 on loopback, holding the two versions under s3://models/two_versions."""
    if missing := store_emulators.missing():
        pytest.fail(f"missing {', '.join(missing)}: run `make store-emulators`")
    emulator = store_emulators.S3Emulator.start(tmp_path_factory.mktemp("s3"))
    for version in (STABLE, CANARY):
        emulator.upload(model_dir / str(version), f"two_versions/{version}")
    yield emulator
    emulator.stop()


def test_a_container_rendered_for_a_bucket_serves_its_version_from_it(
    bucket: store_emulators.S3Emulator, tmp_path: Path
) -> None:
    """The Secret's keys, the endpoint and the cache volume are all the server needs."""
    md = spec.parse(
        {
            "model": {
                "name": "two_versions",
                "storage": {
                    "uri": bucket.uri("two_versions"),
                    "credentials": {"secretName": "s3-keys"},
                    "endpoint": bucket.env["AWS_ENDPOINT_URL"],
                },
            },
            "stable": {"version": STABLE},
        }
    )
    owner = render.Owner(name="contract", namespace="ns", uid="uid")
    objs = {
        f"{o['kind']}/{o['metadata']['name']}": o
        for o in render.children(md, owner, canary_on=False, weight=0)
    }
    keys = {k: v for k, v in bucket.env.items() if k != "AWS_ENDPOINT_URL"}
    container = Container(objs, "stable", tmp_path, secrets={"s3-keys": keys})
    try:
        container.wait_ready()
        assert rest_predict(container) == [2.5, 3.0, 4.5]
        assert grpc_predict(container) == [2.5, 3.0, 4.5]
        cache = container.mounts["/var/cache/berth"]
        assert any(cache.rglob("saved_model.pb"))  # downloaded into the rendered cache volume
    finally:
        container.stop()
