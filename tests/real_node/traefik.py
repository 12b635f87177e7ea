"""Traefik as the real-node tier's Gateway API implementation: one local process that reads
Gateways, HTTPRoutes and GRPCRoutes from the test control plane and routes real traffic by
their backendRef weights. Built by `tools/build-traefik.sh`.

What Traefik needs, learnt from its `kubernetesGateway` provider:

* A Gateway listener binds nothing itself: it attaches to the Traefik entry point whose address
  ends in the listener's port, so `start` opens one entry point per listener with the same port.
* One plain HTTP entry point serves HTTP/1.1 and h2c gRPC alike, and Traefik does not refuse an
  HTTPRoute and a GRPCRoute on one listener, so one listener is enough for both. It does not tell
  gRPC from HTTP either: both become path rules, so a GRPCRoute without method matches outranks
  an HTTPRoute on the same hostnames and takes its HTTP requests too (they fail with 500).
* GRPCRoute backends are h2c when the Service port's `appProtocol` is absent or
  `kubernetes.io/h2c` (`https` for TLS); any other value (`grpc`, …) makes the route
  ResolvedRefs=False. HTTPRoute backends are plain HTTP unless `appProtocol` says otherwise.
* It reads endpoints from EndpointSlices, only endpoints with `conditions.ready: true`, and only
  ports whose `name` equals the Service port's name ("" for an unnamed one): a hand-written slice
  must spell both out.
* It authenticates with the KUBECONFIG it is given (client certificates work) and writes the
  status of the GatewayClasses that name its controller, of their Gateways and of the routes
  attached to them; routes whose parent is a Service (GAMMA) it ignores, with no status.

Contract: `start` returns a `Traefik` whose ping answers, or raises with its log tail; `stop()`
is idempotent. It runs in the caller's network namespace, which for the tier is its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import urllib.request
from collections.abc import Mapping
from typing import Any, Literal

import processes

Manifest = dict[str, Any]
RouteKind = Literal["HTTPRoute", "GRPCRoute"]

CACHE_DIR = pathlib.Path(os.environ.get("BERTH_CACHE", pathlib.Path.home() / ".cache" / "berth"))
BINARY = CACHE_DIR / "bin" / "traefik"
CONTROLLER_NAME = "traefik.io/gateway-controller"
GATEWAY_API = "gateway.networking.k8s.io/v1"
ADMIN_ENTRY_POINT = "traefik"
"""The entry point of Traefik's own ping and API; never a Gateway listener."""
START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 10.0
THROTTLE = "200ms"
"""How long Traefik coalesces configuration changes (its default, 2 s, only delays tests)."""


def gateway_class(name: str = "traefik") -> Manifest:
    """A GatewayClass Traefik's controller accepts (cluster-scoped)."""
    return {
        "apiVersion": GATEWAY_API,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": CONTROLLER_NAME},
    }


def gateway(
    name: str, namespace: str, *, class_name: str = "traefik", listeners: Mapping[str, int]
) -> Manifest:
    """A Gateway with one plain-HTTP listener per `listeners` entry (name → port), each taking
    HTTPRoutes and GRPCRoutes from every namespace. Start Traefik with the same `listeners`."""
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [
                {
                    "name": listener,
                    "port": port,
                    "protocol": "HTTP",
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                }
                for listener, port in listeners.items()
            ],
        },
    }


def static_config(
    *, listeners: Mapping[str, int], host: str, admin_port: int, status_ip: str | None
) -> dict[str, Any]:
    """Traefik's static configuration: the entry points, the Gateway provider, nothing that calls
    out (no version check, no usage statistics, no dashboard)."""
    entry_points: dict[str, Any] = {
        name: {"address": f"{host}:{port}", "transport": {"lifeCycle": {"graceTimeOut": "1s"}}}
        for name, port in listeners.items()
    }
    entry_points[ADMIN_ENTRY_POINT] = {"address": f"{host}:{admin_port}"}
    provider: dict[str, Any] = {}
    if status_ip:
        provider["statusAddress"] = {"ip": status_ip}
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO", "noColor": True},
        "entryPoints": entry_points,
        "ping": {"entryPoint": ADMIN_ENTRY_POINT},
        "api": {"insecure": True, "dashboard": False},
        "providers": {"providersThrottleDuration": THROTTLE, "kubernetesGateway": provider},
    }


@dataclasses.dataclass
class Traefik:
    """A running Traefik and how to reach its API."""

    process: processes.LoggedProcess
    admin_url: str

    def api(self, path: str) -> Any:
        """GET `path` of Traefik's API (`/api/http/routers`, …), parsed."""

        with urllib.request.urlopen(f"{self.admin_url}{path}", timeout=10) as reply:
            return json.loads(reply.read())

    def served_weights(self, kind: RouteKind, namespace: str, name: str) -> set[tuple[int, ...]]:
        """The backend weights, in backendRef order, of every enabled router Traefik built for
        the route (one per match and parent listener); empty while it serves none."""
        prefix = _normalized(f"{kind.lower()}-{namespace}-{name}-gw-")
        routers = self.api(f"/api/http/routers?search={prefix}&per_page=1000")
        found = set()
        for router in routers:
            if router["name"].startswith(prefix) and router.get("status") == "enabled":
                service = router["service"].split("@")[0]
                weighted = self.api(f"/api/http/services/{service}@kubernetesgateway")["weighted"]
                found.add(tuple(int(s.get("weight", 1)) for s in weighted["services"]))
        return found

    def wait_for_route(
        self,
        kind: RouteKind,
        namespace: str,
        name: str,
        *,
        weights: tuple[int, ...] | None = None,
        timeout_seconds: float = START_TIMEOUT_SECONDS,
    ) -> None:
        """Wait until Traefik serves the route (with exactly `weights` on every router, if
        given): its status says it was accepted a moment before the router is live."""
        self.process.wait_until(
            lambda: self.served_weights(kind, namespace, name),
            until=lambda seen: seen and (weights is None or seen == {weights}),
            timeout_seconds=timeout_seconds,
            message=f"Traefik to serve {kind} {namespace}/{name} with weights {weights}",
        )

    def stop(self) -> None:
        self.process.stop(grace_seconds=STOP_GRACE_SECONDS)


def start(
    *,
    kubeconfig: pathlib.Path,
    listeners: Mapping[str, int],
    log_dir: pathlib.Path,
    host: str = "127.0.0.1",
    admin_port: int | None = None,
    status_ip: str | None = None,
    binary: pathlib.Path = BINARY,
) -> Traefik:
    """Start Traefik against the API server of `kubeconfig`, bound to `host`, and wait for its
    ping; `status_ip` is the address it writes into Gateway status."""
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"{binary} is missing: run tools/build-traefik.sh")
    admin_port = admin_port or processes.free_port()
    config_path = log_dir / "traefik.yaml"
    config = static_config(
        listeners=listeners, host=host, admin_port=admin_port, status_ip=status_ip
    )
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
    env["KUBECONFIG"] = str(kubeconfig)  # else the provider would try in-cluster credentials
    command = [str(binary), f"--configFile={config_path}"]
    process = processes.start(
        command, name="traefik", log_path=log_dir / "traefik.log", env=env, die_with_parent=True
    )
    admin_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    traefik = Traefik(process, f"http://{admin_host}:{admin_port}")
    try:
        process.wait_until(
            lambda: processes.http_status(f"{traefik.admin_url}/ping"),
            until=lambda status: status == 200,
            timeout_seconds=START_TIMEOUT_SECONDS,
            message="Traefik's ping",
        )
    except BaseException:
        traefik.stop()
        raise
    return traefik


def _normalized(name: str) -> str:
    """A name prefix as Traefik's `provider.Normalize` spells it: each run of characters other than
    letters and digits becomes one dash."""
    return re.sub(r"[^a-zA-Z0-9]+", "-", name)
