"""JSON output of the commands: always valid JSON (no NaN or Infinity)."""

from __future__ import annotations

import sys


def json_text(data: object, command: str, indent: int = 1) -> str:
    """``data`` as JSON that is always valid: a NaN or an infinity (which JSON cannot hold) becomes
    ``null``, with a warning on stderr naming where. Numpy numbers are written as plain numbers."""
    import json
    import math

    replaced: list[str] = []

    def clean(x: object, where: str) -> object:
        if isinstance(x, bool) or x is None or isinstance(x, (str, int)):
            return x
        if isinstance(x, float) or type(x).__module__ == "numpy":
            try:
                v = x.item() if hasattr(x, "item") else x  # type: ignore[union-attr]
            except (ValueError, TypeError):
                v = x
            if isinstance(v, float) and not math.isfinite(v):
                replaced.append(where or "value")
                return None
            if isinstance(v, (bool, int, float, str)) or v is None:
                return v
            if isinstance(v, (list, tuple)):
                return [clean(y, f"{where}.{i}") for i, y in enumerate(v)]
            return str(v)
        if isinstance(x, dict):
            return {str(k): clean(v, f"{where}.{k}" if where else str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(y, f"{where}.{i}" if where else str(i)) for i, y in enumerate(x)]
        if hasattr(x, "tolist"):
            return clean(x.tolist(), where)  # type: ignore[union-attr]
        return str(x)

    text = json.dumps(clean(data, ""), indent=indent, allow_nan=False)
    if replaced:
        shown = ", ".join(replaced[:5]) + (f" and {len(replaced) - 5} more" if len(replaced) > 5 else "")
        print(f"bvn-planner {command}: warning: {len(replaced)} value(s) that are not finite numbers were written "
              f"as null ({shown})", file=sys.stderr)
    return text
