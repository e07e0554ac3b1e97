"""A configuration's meaning as canonical JSON, and its hash: the one function every id and key goes through.

Identity must be the same on every machine. A float computed at run time may round differently from one CPU to
another (numpy's SIMD dispatch), so meanings hold specifications (`{"logspace": [-7, 2, 50]}`), never computed
grids, and as a second line of defence every float is written as its shortest decimal at 12 significant digits
before hashing: two floats one rounding step apart mean the same thing."""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

FLOAT_DIGITS = 12


def canonical(obj: Any) -> Any:
    """`obj` with every float at FLOAT_DIGITS significant digits, tuples as lists, numpy scalars as Python ones,
    and anything with a `describe()` (a grid specification) as its description."""
    if hasattr(obj, "describe"):
        return canonical(obj.describe())
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        obj = obj.item()
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return repr(obj)
        rounded = float(f"{obj:.{FLOAT_DIGITS}g}")
        return 0.0 if rounded == 0 else rounded  # -0.0 and 0.0 are one value
    if isinstance(obj, dict):
        return {str(key): canonical(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(value) for value in obj]
    return str(obj)


def canonical_json(obj: Any) -> str:
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"))


def meaning_hash(obj: Any, length: int = 16) -> str:
    """Identifier of a configuration by what it means (its canonical JSON), never by where it runs."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
