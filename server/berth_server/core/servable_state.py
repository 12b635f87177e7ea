"""The life-cycle states of a model version, numbered as GetModelStatus reports them."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Protocol

from berth_server import errors


class State(enum.IntEnum):
    """ModelVersionStatus.State: a version moves START → LOADING → AVAILABLE → UNLOADING → END.

    A failed load goes from LOADING to END with its error kept in the status.
    """

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class Servable(Protocol):
    """What the manager holds for a loaded version; the runtime provides it."""

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One row of GetModelStatus."""

    version: int
    state: State
    error: errors.ServingError | None = None


@dataclasses.dataclass(frozen=True)
class ServableId:
    name: str
    version: int
    path: Path
