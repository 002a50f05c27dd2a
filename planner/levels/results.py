"""What the level finder returns and raises: the error with its message for the user, the vertebrae as
found along the spine and the proposal handed to callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from planner.plan import LANDMARK_NAMES, Landmarks, Level


class LevelDetectionError(ValueError):
    """The spine or its levels could not be found; the message says what is missing."""


class MarkError(LevelDetectionError):
    """The marks disagree with the image (in a disc, outside the bodies, a count of bodies between them
    that does not fit their names); the message names the likely correction."""



@dataclass
class VertebraFound:
    """One vertebra as found: the curve indices of the discs below and above and its landmarks."""

    t_low: float
    t_high: float
    landmarks: Landmarks
    name: str = ""
    sacral: bool = False
    #: Partially in the field of view (a disc missing at the top or bottom).
    partial: bool = False
    #: Measured inner cortical outline of each pedicle ("left", "right"): LPS polygons.
    pedicle_outlines: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    #: Measured spinal canal outline at mid-height (LPS polygon; empty when not measured).
    canal_outline: list[tuple[float, float, float]] = field(default_factory=list)


@dataclass
class LevelProposal:
    levels: list[Level]
    modality: str
    notes: list[str] = field(default_factory=list)
    #: The image disagrees with the marks (each names the likely correction); shown where the physician marks.
    warnings: list[str] = field(default_factory=list)


def body_heights(verts: Sequence[VertebraFound], partial: bool = False) -> list[float | None]:
    """Each vertebra's body height (superior to inferior endplate centre, mm); None where it is only partly in
    the field of view (unless ``partial``: then the height of the part in view) or an endplate is not
    measured."""
    out: list[float | None] = []
    for v in verts:
        lm = v.landmarks
        whole = (partial or not v.partial) and lm.superior_endplate_lps is not None \
            and lm.inferior_endplate_lps is not None
        out.append(float(np.linalg.norm(np.subtract(lm.superior_endplate_lps, lm.inferior_endplate_lps)))
                   if whole else None)
    return out


def _measured_neighbours(heights: Sequence[float | None], i: int) -> list[float]:
    return [h for h in list(heights[max(0, i - 1):i]) + list(heights[i + 1:i + 2]) if h is not None]


def neighbours_height(heights: Sequence[float | None], i: int) -> float | None:
    """The median height of the measured bodies next to body ``i`` (None when neither is measured)."""
    near = _measured_neighbours(heights, i)
    return float(np.median(near)) if near else None


def odd_heights(heights: Sequence[float | None], at_least: Sequence[float | None], short_ratio: float,
                tall_ratio: float) -> dict[int, tuple[str, float, float]]:
    """Index -> ("short", its height, median of its neighbours' heights) for the bodies lower than
    ``short_ratio`` times that median, and ("tall", its height, the taller neighbour's height) for those taller
    than ``tall_ratio`` times their taller neighbour that is not itself short (a body next to a collapsed one is
    not taller than its other neighbour; with no other neighbour it is not compared). ``heights``: None where
    not measured. ``at_least`` (as long as ``heights``): per body, a height that is only a lower bound (a body
    cut by the edge of the image or of the part searched, whose ``heights`` entry is None): such a body is
    never short nor anyone's reference, but already taller than ``tall_ratio`` times its neighbour it is tall."""
    out: dict[int, tuple[str, float, float]] = {}
    for i, h in enumerate(heights):
        near = neighbours_height(heights, i)
        if h is not None and near is not None and h < short_ratio * near:
            out[i] = ("short", h, near)
    usable = [None if i in out else h for i, h in enumerate(heights)]
    for i, (h, bound) in enumerate(zip(heights, at_least)):
        h = h if h is not None else bound
        near_all = _measured_neighbours(usable, i)
        if h is not None and i not in out and near_all and h > tall_ratio * max(near_all):
            out[i] = ("tall", h, max(near_all))
    return out


def lps_tuple(v: np.ndarray) -> tuple[float, float, float]:
    return (round(float(v[0]), 3), round(float(v[1]), 3), round(float(v[2]), 3))


def not_measured(landmarks: Landmarks) -> list[str]:
    """The landmark names (:data:`planner.plan.LANDMARK_NAMES`) that were not measured: absent, to be
    placed by hand (never filled in from a model of the average spine)."""
    return [n for n in LANDMARK_NAMES if getattr(landmarks, n) is None]


def landmark_label(name: str) -> str:
    """A landmark field name for people: ``pedicle_right_lps`` -> ``pedicle right``."""
    return name.removesuffix("_lps").replace("_", " ")
