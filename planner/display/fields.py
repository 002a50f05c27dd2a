"""The editable range of a model field, read from its pydantic constraints (no Qt), so an editor
offers exactly the values the plan accepts."""

from __future__ import annotations

import math

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel


def field_range(model: type[BaseModel], name: str, decimals: int) -> tuple[float, float]:
    """(lowest, highest) value of the numeric field ``name`` of ``model`` that an editor showing
    ``decimals`` decimals can offer: an exclusive bound moves in by one step of the last decimal.
    A field without a bound on a side raises ValueError (an editor needs both)."""
    field = model.model_fields[name]
    step = 10.0 ** -decimals
    lo = hi = None
    for c in field.metadata:
        if isinstance(c, Ge):
            lo = float(c.ge)
        elif isinstance(c, Gt):
            lo = math.floor(float(c.gt) / step + 1e-9) * step + step
        elif isinstance(c, Le):
            hi = float(c.le)
        elif isinstance(c, Lt):
            hi = math.ceil(float(c.lt) / step - 1e-9) * step - step
    if lo is None or hi is None:
        raise ValueError(f"{model.__name__}.{name} has no lower or upper bound")
    return round(lo, decimals), round(hi, decimals)
