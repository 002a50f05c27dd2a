"""Finding a plan's images for the documents: by Series Instance UID, in a folder the user names
(``--images``) or at the plan's path hints (``CaseInfo.series[].path_hint``).

A thin adapter over :func:`planner.relink.find_plan_images` (shared with the application), keeping
the shape the document commands use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from planner.plan import Plan
from planner.relink import describe_series
from planner.relink import find_plan_images as _relink


@dataclass
class FoundImages:
    images: dict[str, Any] = field(default_factory=dict)  # series UID -> Volume | ProjectionImage
    missing: list[str] = field(default_factory=list)  # descriptions of plan series not found
    notes: list[str] = field(default_factory=list)


def find_plan_images(plan: Plan, folder: Optional[os.PathLike | str] = None,
                     plan_path: Optional[os.PathLike | str] = None) -> FoundImages:
    """Load the plan's series from ``folder`` (or the path hints when no folder is given; relative hints
    are taken from the folder of ``plan_path``)."""
    res = _relink(plan, [folder] if folder is not None else None, plan_path=plan_path)
    found = FoundImages(images=dict(res.images), missing=[describe_series(r) for r in res.missing],
                        notes=list(res.notes))
    if res.missing:
        found.notes.append("Series not found: " + ", ".join(found.missing) + ".")
    return found
