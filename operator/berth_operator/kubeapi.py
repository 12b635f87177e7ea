"""A small blocking client for what the operator and the plugin write: server-side apply of
children, deletes, and ModelDeployment spec/status patches.

One field manager for every apply, so fields dropped from the desired object are removed and a
hand edit of an owned field is overwritten (force=True). Every mutating call is counted in
`writes` and logged as `write N: METHOD PATH`; the liveness endpoint reports the count. A steady
operator must not increase it. Safe to share between threads (reconciles run in a thread pool).
"""

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import kubernetes.client
import kubernetes.config
from kubernetes.client.exceptions import ApiException

from berth_operator import kinds, naming

Manifest = dict[str, Any]
logger = logging.getLogger(__name__)


def object_path(api_version: str, kind: str, namespace: str, name: str = "") -> str:
    row = kinds.of(api_version, kind)
    prefix = f"/apis/{row.api_version}" if row.group else f"/api/{row.version}"
    path = f"{prefix}/namespaces/{namespace}/{row.plural}"
    return f"{path}/{name}" if name else path


def load_config() -> None:
    """In-cluster service account when running in a pod, else KUBECONFIG / ~/.kube/config."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


class Client:
    def __init__(self, api: kubernetes.client.ApiClient | None = None) -> None:
        self.api = api or kubernetes.client.ApiClient()
        self.writes = 0
        self._lock = threading.Lock()

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> Manifest:
        if method != "GET":
            with self._lock:
                self.writes += 1
                number = self.writes
            logger.info("write %d: %s %s", number, method, path)
        request = self.api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return json.loads(data) if data else {}

    def apply(self, obj: Mapping[str, Any], *, manager: str = naming.FIELD_MANAGER) -> Manifest:
        """Server-side apply with the operator's field manager (or `manager`), taking over
        conflicting fields."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        query = [("fieldManager", manager), ("force", "true")]
        return self._call(
            "PATCH", path, body=dict(obj), content_type="application/apply-patch+yaml", query=query
        )

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Delete in the background (dependents go through garbage collection); gone is fine."""
        body = {"propagationPolicy": "Background"}
        try:
            self._call("DELETE", object_path(api_version, kind, namespace, name), body=body)
        except ApiException as error:
            if error.status != 404:
                raise

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Manifest:
        return self._call("GET", object_path(api_version, kind, namespace, name))

    def patch_model_deployment(
        self,
        namespace: str,
        name: str,
        patch: Any,
        *,
        status: bool = False,
        json_patch: bool = False,
    ) -> Manifest:
        """Merge patch (or JSON patch) of a ModelDeployment's spec, or of its status subresource."""
        resource = kinds.MODEL_DEPLOYMENT
        path = object_path(resource.api_version, resource.kind, namespace, name)
        content_type = (
            "application/json-patch+json" if json_patch else "application/merge-patch+json"
        )
        return self._call(
            "PATCH", path + ("/status" if status else ""), body=patch, content_type=content_type
        )
