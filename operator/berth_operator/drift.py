"""Does a live object still carry everything the operator wants on it?

The reconciler applies a child only when this says it drifted, so a steady ModelDeployment costs
no API writes. "Carries" means: every field of the desired object is present in the live one with
an equal value; fields the API server or other controllers add are ignored. Quantities compare by
value ("1" equals 1, "500m" equals "0.5") because the API server normalises them. A ConfigMap's
`data` is the exception: a live key the desired object no longer holds is drift too.
"""

from decimal import Decimal, InvalidOperation
from typing import Any


def carries(live: Any, desired: Any) -> bool:
    """Whether `live` holds every field of `desired` (and no key `desired["data"]` dropped)."""
    data = desired.get("data") if isinstance(desired, dict) else None
    if isinstance(data, dict) and not (
        isinstance(live, dict) and set(live.get("data") or {}) == set(data)
    ):
        return False
    return _carries(live, desired)


def _carries(live: Any, desired: Any) -> bool:
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and _carries(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_carries(a, b) for a, b in zip(live, desired, strict=True))
        )
    if live == desired:
        return True
    return _quantity(live) is not None and _quantity(live) == _quantity(desired)


_SUFFIXES = {
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}


def _quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity as a number, or None when the value is not one."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        scale = Decimal(1)
    try:
        return Decimal(text) * scale
    except InvalidOperation:
        return None
