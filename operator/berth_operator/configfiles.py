"""The servers' config files in the owner's ConfigMap, under content-addressed keys.

A pod mounts its files by key (`models-<hash>.config` as models.config), and a key's text is a
pure function of its name. The server re-reads models.config every configPollSeconds, yet a
running pod can never be handed another version: a version or batching change renders new keys,
so a new pod template, so a rolling update and nothing else. Keys that pods of an older template
may still mount stay in the ConfigMap (`still_mounted`) until every Deployment has rolled.
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from berth_operator import serverconfig, spec


@dataclass(frozen=True)
class File:
    key: str
    """ConfigMap key: the file's stem and a hash of its text."""
    path: str
    """File name under naming.CONFIG_DIR, as the server's flags name it."""
    text: str


def track_files(md: spec.ModelDeploymentSpec, version: int) -> list[File]:
    """The files of a track serving `version`: models.config, and batching.config when on."""
    models = serverconfig.models_config(md.model_name, serverconfig.base_path(md), version)
    files = [_file("models", models)]
    if md.batching is not None:
        files.append(_file("batching", serverconfig.batching_config(md.batching)))
    return files


def _file(stem: str, text: str) -> File:
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return File(key=f"{stem}-{digest}.config", path=f"{stem}.config", text=text)


def still_mounted(
    config_map: Mapping[str, Any] | None, deployments: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """Live ConfigMap data that live pods may mount: all of it while any Deployment still runs
    pods of an older template (their keys are not visible here), else the keys the Deployments'
    templates name."""
    data: Mapping[str, str] = (config_map or {}).get("data") or {}
    deployments = list(deployments)
    if not all(_rolled(d) for d in deployments):
        return dict(data)
    named = {key for d in deployments for key in _keys(d)}
    return {key: text for key, text in data.items() if key in named}


def _rolled(deployment: Mapping[str, Any]) -> bool:
    """Every pod runs the current template (the controller has seen it and no old pod is left)."""
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    return int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0)) and int(
        status.get("replicas", 0)
    ) == int(status.get("updatedReplicas", 0))


def _keys(deployment: Mapping[str, Any]) -> list[str]:
    pod = (deployment.get("spec") or {}).get("template", {}).get("spec", {})
    return [
        item["key"]
        for volume in pod.get("volumes", [])
        for item in (volume.get("configMap") or {}).get("items", [])
    ]
