"""kopf settings and the operator's own process options.

kopf's settings are changed in one startup hook (`configure`); process-level choices (namespaces,
liveness endpoint, resync period) come from the command line in `__main__`.
"""

import logging
from dataclasses import dataclass

import kopf

from berth_operator import naming


@dataclass(frozen=True)
class Options:
    resync_seconds: float = 10.0
    """How often each ModelDeployment is re-checked against its children (cached in memory by
    kopf indexes, so a check costs no API call). Bounds how long a deleted child stays missing and
    how late a canary's readiness or deadline is noticed."""


def configure(settings: kopf.OperatorSettings) -> None:
    """Settings per the operator research notes (§3.7): own finalizer and annotation prefix so
    another kopf operator never collides with ours, Warning-level events only."""
    settings.persistence.finalizer = f"{naming.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 60.0
    settings.peering.stealth = True
