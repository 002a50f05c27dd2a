"""Building the image model of a volume (:class:`planner.safety.model.SpineModel`), cached per volume
(weakly) and per region so that dragging a trajectory reuses it: CT by :mod:`planner.safety.ct`, MRI
by :mod:`planner.safety.mr`."""

from __future__ import annotations

import weakref
from typing import Any, Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.plan import Level
from planner.safety.ct import segment_bone_ct
from planner.safety.grid import resample_box
from planner.safety.model import Anchor, SpineModel, anchors_of, assign_owners, level_box, segment_canal
from planner.safety.mr import build_mr_model, level_bodies
from planner.safety.params import SAFETY_PARAMS, SafetyParams
from planner.trajectory import is_ct


def _spacing_for(volume: Volume, params: SafetyParams) -> float:
    lo, hi = params.grid_spacing_mm
    return float(np.clip(np.median(volume.spacing), lo, hi))


def _round_box(lo: np.ndarray, hi: np.ndarray, lattice: float) -> tuple[np.ndarray, np.ndarray]:
    return np.floor(lo / lattice) * lattice, np.ceil(hi / lattice) * lattice


_CACHE: "weakref.WeakKeyDictionary[Any, list[tuple[Any, SpineModel]]]" = weakref.WeakKeyDictionary()


def _anchor_key(anchors: Sequence[Anchor]) -> tuple:
    return tuple((a.level_id, a.name, tuple(np.round(a.body_center_lps, 1)), tuple(np.round(a.u, 3)),
                  tuple(np.round(a.posterior_wall_lps, 1))) for a in anchors)


def spine_model(volume: Volume, levels: Sequence[Level], box_lps: Optional[tuple[np.ndarray, np.ndarray]] = None,
                params: SafetyParams = SAFETY_PARAMS, modality: Optional[str] = None,
                body_volume: Optional[Volume] = None) -> SpineModel:
    """The spine model of ``volume`` in ``box_lps`` (default: around every level), for the plan's
    ``levels``. CT or MRI by ``modality`` (default: from the volume). MRI: the vertebral bodies are outlined
    by the body finder on ``body_volume`` (a sagittal series of the same frame of reference, see
    :func:`planner.checks.body_volume_for`; default ``volume`` itself). Raises ValueError when the box lies
    outside the image."""
    anchors = anchors_of(levels)
    if box_lps is None:
        if not anchors:
            raise ValueError("no level has a body centre landmark")
        boxes = [level_box(a, params) for a in anchors]
        box_lps = (np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0))
    # beyond the image there is nothing to model: the box is clipped to it first, so that boxes asked for
    # paths whose skin end lies outside a narrow image still find the model that covers the whole image there
    corners = volume.corners_lps()
    lo = np.maximum(np.asarray(box_lps[0], float), corners.min(0))
    hi = np.minimum(np.asarray(box_lps[1], float), corners.max(0))
    lo, hi = _round_box(lo, hi, params.region_lattice_mm)
    mod = (modality or ("CT" if is_ct(volume) else "MR")).upper()
    akey = _anchor_key(anchors) + (None if body_volume is None or body_volume is volume else weakref.ref(body_volume),)
    entries = _CACHE.setdefault(volume, [])
    for key, model in entries:
        klo, khi, kmod, kanchors, kparams = key
        if kmod == mod and kanchors == akey and kparams == params and np.all(klo <= lo + 1e-6) and \
                np.all(khi >= hi - 1e-6):
            return model
    model = _build(volume, lo, hi, anchors, params, mod, body_volume or volume)
    entries.append(((lo, hi, mod, akey, params), model))
    if len(entries) > 6:
        del entries[0]
    return model


def approach_box(volume: Volume, anchor: Anchor, params: SafetyParams = SAFETY_PARAMS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The box a suggestion models for one level, so that the checks of the path it finds reuse its model.
    CT: the level's box (:func:`planner.safety.model.level_box`); the skin of the back, where the checks of a
    path begin, lies inside it on CT. MRI: the level's box reaching ``approach_mm`` farther back along the
    image axis nearest the body's posterior direction: the checks follow a path from the skin, or
    ``approach_mm`` back from its entry where the skin is not found on the line, which on a sagittal MRI
    often leaves the narrow slab of slices sideways first. The box is cut to the image (:func:`spine_model`).
    """
    lo, hi = level_box(anchor, params)
    if is_ct(volume):
        return lo, hi
    back = -np.asarray(anchor.u, dtype=float)
    k = int(np.argmax(np.abs(back)))
    far = float(anchor.body_center_lps[k] + (params.region_back_mm + params.approach_mm) * back[k])
    if back[k] > 0:
        hi[k] = max(hi[k], far)
    else:
        lo[k] = min(lo[k], far)
    return lo, hi


def _build(volume: Volume, lo: np.ndarray, hi: np.ndarray, anchors: list[Anchor], params: SafetyParams,
           modality: str, body_volume: Volume) -> SpineModel:
    grid = resample_box(volume, lo, hi, _spacing_for(volume, params))
    if modality == "CT":
        bone, enclosed = segment_bone_ct(grid, params)
        canal, rings = segment_canal(grid, enclosed, bone, anchors, params)
        owner, notes, markers, weight = assign_owners(
            grid, bone, ndimage.gaussian_filter(grid.array, params.smooth_mm / grid.spacing_mm), anchors, params, rings)
        measured = {"bone", "canal", "owners"}
        if not canal.any():
            notes.append("the spinal canal was not found on this CT")
            measured.discard("canal")
        model = SpineModel(grid, "CT", bone, canal, owner, list(anchors), measured, notes)
        model.owner_markers, model.owner_weight = markers, weight
        model.source_spacing_mm = float(np.max(volume.spacing))
        return model
    return build_mr_model(grid, anchors, params, level_bodies(body_volume, anchors))
