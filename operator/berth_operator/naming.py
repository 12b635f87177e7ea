"""Names, labels and fixed paths shared by the rendered children, the reconciler and the plugin.

The container paths and ports are the operator–server contract: change them together with the
server and the contract test.
"""

import re
from typing import Literal

from berth_operator import spec

GROUP = "serving.berth.dev"
FIELD_MANAGER = "berth-operator"

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "berth-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_OWNER = f"{GROUP}/modeldeployment"
LABEL_TRACK = f"{GROUP}/track"
LABEL_VERSION = f"{GROUP}/version"

GRPC_PORT = 8500
REST_PORT = 8501
CONFIG_DIR = "/etc/berth"
MODEL_CACHE_DIR = "/var/cache/berth"
"""Where a server with an object-store base path downloads versions (an emptyDir)."""
MODELS_CONFIG_FILE = f"{CONFIG_DIR}/models.config"
BATCHING_CONFIG_FILE = f"{CONFIG_DIR}/batching.config"
MODELS_ROOT = "/models"
SERVER_COMMAND = "berth-server"
SERVER_USER_ID = 1000
GPU_RESOURCE = "nvidia.com/gpu"


LIVENESS_PATH = "/healthz"
"""The server's liveness path: 200 once its REST port is open (after every model has loaded)."""
READINESS_PATH = "/readyz"
"""The server's readiness path: 200 only once every configured model has an AVAILABLE version.

TF Serving's status URL answers 200 as soon as the model is known (TF Serving issue #671), which
would send traffic to a pod still loading; Berth's server offers this stricter path.
"""


def model_base_path(model: str) -> str:
    return f"{MODELS_ROOT}/{model}"


def track_name(owner: str, track: Track) -> str:
    """Deployment and Service name of one track."""
    return f"{owner}-{track}"


def config_map_name(owner: str) -> str:
    return f"{owner}-config"


MAX_OWNER_NAME = 63 - len("-canary")
"""Services are DNS labels (63 characters); the longest suffix a child adds is 7."""
_OWNER_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def check_owner_name(owner: str) -> None:
    """Raise SpecError for a ModelDeployment name its children cannot carry.

    The CRD refuses these names (CEL on metadata.name); this catches objects stored before it.
    A name ending in a track suffix would make its umbrella Service another one's track Service
    (`a-stable` is the stable Service of `a`).
    """
    if len(owner) > MAX_OWNER_NAME:
        raise spec.SpecError("metadata.name", f"must be at most {MAX_OWNER_NAME} characters")
    if not _OWNER_NAME.fullmatch(owner):
        raise spec.SpecError(
            "metadata.name", "must be lowercase letters, digits and '-', starting with a letter"
        )
    if owner.endswith(tuple(f"-{track}" for track in TRACKS)):
        raise spec.SpecError("metadata.name", "must not end in -stable or -canary")


def owner_labels(owner: str) -> dict[str, str]:
    """Labels on every child: how the reconciler finds what it owns."""
    return {
        LABEL_NAME: "berth-server",
        LABEL_INSTANCE: owner,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_OWNER: owner,
    }


def track_selector(owner: str, track: Track) -> dict[str, str]:
    """Pod selector of one track's Deployment and Service (immutable once created)."""
    return {LABEL_OWNER: owner, LABEL_TRACK: track}
