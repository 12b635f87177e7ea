"""kopf settings and the operator's own process options.

kopf's settings are changed in one startup hook (`configure`); process-level choices (namespaces,
liveness endpoint, resync period) come from the command line in `__main__`.
"""

import logging
from dataclasses import dataclass

import kopf

from berth_operator import naming, spec


@dataclass(frozen=True)
class ServerImages:
    """The server image a ModelDeployment gets when its spec.server.image is unset."""

    cpu: str = "ghcr.io/berth-dev/berth-server:0.1.0"
    """Dockerfile.server as built by default: TensorFlow without CUDA."""
    gpu: str = "ghcr.io/berth-dev/berth-server:0.1.0-gpu"
    """Dockerfile.server with TENSORFLOW_EXTRA=and-cuda, for servers that request GPUs."""

    def choose(self, *, image: str | None, gpus: int) -> str:
        """The spec's own image wins; else the GPU variant when GPUs are requested."""
        return image or (self.gpu if gpus > 0 else self.cpu)


@dataclass(frozen=True)
class ServerSecurity:
    """What the cluster's policy lets server pods do: a platform choice, set by the chart."""

    run_as_user: int | None = naming.SERVER_USER_ID
    """The pods' UID, GID and fsGroup. None leaves them to the cluster: OpenShift's restricted
    SCC assigns each namespace a UID range and refuses a fixed 1000."""
    allow_host_path: bool = False
    """spec.model.storage.hostPath mounts a node's directory: a local-cluster convenience that
    lets any team read whatever the node holds, so off unless the platform turns it on."""

    def check(self, md: spec.ModelDeploymentSpec) -> None:
        """Raise SpecError for what this cluster refuses to serve."""
        if isinstance(md.storage, spec.HostPathSource) and not self.allow_host_path:
            raise spec.SpecError(
                "spec.model.storage.hostPath",
                "hostPath storage is off in this operator (chart value server.allowHostPath, "
                "flag --allow-host-path); use pvc or uri",
            )


@dataclass(frozen=True)
class Options:
    resync_seconds: float = 10.0
    """How often each ModelDeployment is re-checked against its children (cached in memory by
    kopf indexes, so a check costs no API call). Bounds how long a deleted child stays missing and
    how late a canary's readiness or deadline is noticed."""
    drain_seconds: float = 10.0
    """How long a leaving canary (removed, rolled back, promoted) stays up at weight 0 once the
    routes carry the 0: the time routers take to stop sending to it."""
    images: ServerImages = ServerImages()
    security: ServerSecurity = ServerSecurity()
    metrics_port: int | None = None
    """Port of the Prometheus metrics endpoint (`operator_metrics`); None serves none. Off by
    default so that several operators on one host (tests, local runs) never fight over a port;
    the chart turns it on."""


LIST_CHUNK = 100
"""Objects per page of kopf's initial lists. Unpaged, one response carries every child of a kind
(cluster-wide with 1,000 ModelDeployments: 2,000 Services), parsed at once on top of everything a
starting operator already holds until its indexes are complete."""


def configure(settings: kopf.OperatorSettings) -> None:
    """Settings per the operator research notes (§3.7): own finalizer and annotation prefix so
    another kopf operator never collides with ours, Warning-level events only from log lines (the
    rollout's Normal events are posted explicitly, `rollout_events`), initial lists in pages
    (`LIST_CHUNK`)."""
    settings.persistence.finalizer = f"{naming.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 60.0
    settings.watching.chunk_size = LIST_CHUNK
    settings.peering.stealth = True
