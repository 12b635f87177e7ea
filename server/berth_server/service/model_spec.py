"""Which model, version and signature a request names, as both transports decode it."""

from __future__ import annotations

import dataclasses

from berth_server.servables import inference


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSpec:
    """TF Serving's ModelSpec: a version or a label (neither: the latest), and a signature."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""

    @property
    def signature_key(self) -> str:
        return inference.signature_key(self.signature_name)
