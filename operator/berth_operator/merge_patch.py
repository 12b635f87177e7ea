"""JSON merge patches (RFC 7386) of the operator's status writes.

A key dropped at any depth must be nulled in the patch: a nested key left in storage would differ
from every status computed after a restart (a restarted operator starts from the stored status),
and cost a write per ModelDeployment on every restart.
"""

from collections.abc import Mapping
from typing import Any


def between(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns `old` into `new`; lists are replaced whole, as RFC 7386 does."""
    patch: dict[str, Any] = {key: None for key in old.keys() - new.keys()}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = between(before, value)
        else:
            patch[key] = value
    return patch
