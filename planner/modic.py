"""Modic assistant: suggest the Modic type, grade and endplate share from T1, T2 (and STIR) signal.

For each endplate of a labelled vertebra the assistant compares the marrow next to the endplate
with the same vertebra's normal marrow, per sequence, and reads the result with the signal table of
../shared/domain.md 2.1:

=========  ======  ==================  ============
Type       T1      T2                  STIR
=========  ======  ==================  ============
1          low     high                high
2          high    iso or high         low
3          low     low                 low
=========  ======  ==================  ============

"Low" and "high" mean a ratio to normal marrow below ``modic_low_ratio`` / above
``modic_high_ratio`` (PlanningSettings, tag "design"). The grade is the Udby grade (domain.md 2.2):
the **maximum** height the change reaches from the endplate, as a percentage of the body height, with the
cut-offs ``modic_grade_a_max_pct`` / ``modic_grade_b_max_pct``. The share is the percentage of the **whole
endplate area** that the change touches: the body is sampled on a grid through every sagittal slice it
spans; per column the endplate's own cortical line is found (concave, tilted endplates), a smooth surface
is fitted to the lines, and the endplate area is the columns whose line lies on that surface
(:func:`_endplate_geometry`: beside S1 the top of the sacral ala lies lower and is left out). All
thresholds that change the result are settings; the image sampling values are :class:`ModicParams`.
Checked against the demo phantom's ground truth (tests/test_modic_demo.py) and analytic phantoms
(tests/test_modic.py); no real scan with Modic labels exists in ../shared/data.

An axial T2 (series role "AX_T2"), when loaded, gives a **second reading** of the share
(:func:`_axial_reading`): measured only where the change shows on T2 (types 1 and 3) and the axial series
covers the endplate, stated in the explanation and in ``ModicSuggestion.axial_share_pct``, and never used
for the suggestion itself (its slices, 3-5 mm thick, lie across the few millimetres of marrow under the
endplate that decide the share).

The result is a :class:`planner.plan.ModicSuggestion` with the measured ratios, the region used
(centre and half-sizes of its LPS bounding box) and an explanation of the numbers. It is only a
suggestion (domain.md 2.3): :func:`apply_suggestions` stores it in ``EndplateFinding.suggestion``
without touching the decided fields; :func:`confirm_suggestion` copies it into the decision and sets
``confirmed``; a physician's own choice is stored with ``set_endplate(..., confirmed=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import numpy as np
from scipy import ndimage

from planner.imaging.volume import Volume
from planner.plan import Landmarks, Level, ModicSuggestion, Plan
from planner.settings import PlanningSettings

#: Sagittal sequences the assistant reads, in display order.
SEQUENCES: tuple[str, ...] = ("T1", "T2", "STIR")
#: The axial T2 (the plan's series role), read as a second reading of the endplate area and share.
AXIAL = "AX_T2"
ENDPLATES: tuple[str, ...] = ("superior", "inferior")
#: Voxel code of grid points outside one of the series (see :func:`_voxel_types` for the others).
OUTSIDE = -2

@dataclass(frozen=True)
class ModicParams:
    """Technical detection parameters of the assistant (image sampling, not clinical thresholds; those are
    settings: ``modic_low_ratio``, ``modic_high_ratio``, ``modic_min_share_pct``, ``modic_band_mm``,
    ``modic_band_majority_pct``, ``modic_mixed_min_pct`` and the Udby cut-offs)."""

    #: Sampling step of the body grid (mm).
    sample_step_mm: float = 1.0
    #: The grid reaches this far beyond the wall landmarks in the AP direction (mm): the posterior wall
    #: is concave at the midline, so the body reaches further back on either side.
    ap_margin_mm: float = 4.0
    #: Lateral half-extent of the grid as a fraction of the AP depth (lumbar bodies are about 1.4-1.5
    #: times wider than deep; the grid must hold the whole endplate and some of what lies beside it).
    lateral_fraction: float = 0.9
    #: The central core (fraction of the AP depth on either side of the centre) used for the
    #: endplate profile, the normal marrow and the first fit of the endplate surface.
    core_fraction: float = 0.25
    #: The cortical endplate is searched this far around the landmark (it is dark on every sequence).
    endplate_search_mm: float = 4.0
    #: Per column, the endplate's cortical line (the darkest point on T1 + T2) is searched this far around
    #: the level's endplate; a line at either end of the search is no line.
    line_search_mm: float = 5.0
    #: A column's cortical line must be at least this dark: T1 + T2 ratio to normal marrow (normal marrow
    #: is 2; cortex near 0; the blur of a bright disc lifts the line on T2).
    line_max_dark: float = 1.3
    #: The endplate surface is fitted only when at least this many central columns have a line (a quadratic
    #: surface has 6 coefficients).
    min_core_columns: int = 12
    #: A column belongs to the endplate when its cortical line lies within this distance of the endplate's
    #: surface (a smooth quadratic surface fitted to the lines, concave endplates included): where the bone
    #: beside the body starts lower (the sacral ala beside S1, the pedicles), its line is further away (mm).
    line_tolerance_mm: float = 1.5
    #: The endplate area reaches this far beyond the last column whose line lies on the endplate: where the
    #: endplate bends into the walls, the line leaves the surface before the bone ends (mm).
    rim_mm: float = 1.0
    #: Marrow is read from this far inside each column's cortical line (the band of the first reading, the
    #: height reached).
    cortex_skip_mm: float = 2.5
    #: A point of the endplate is read as changed from the marrow just inside the cortex: ``contact_mm`` from
    #: this far inside the cortical line (further than ``cortex_skip_mm``: the blurred cortex darkens the
    #: first millimetres and pulls a weak change, type 2 on T1, towards normal).
    contact_from_mm: float = 3.5
    contact_mm: float = 2.0
    #: Smoothing of each sequence before classifying voxels (mm, Gaussian sigma).
    smooth_mm: float = 1.0
    #: The height reached: abnormal signal may be interrupted for this long and still continue (mm).
    reach_gap_mm: float = 2.0
    #: A run of rows that differs from the centre must be this long to serve as normal marrow (mm).
    reference_min_run_mm: float = 3.0
    #: Endplate area: a column's line is the endplate's only with marrow under it: at least this much marrow
    #: of about the normal signal (``section_ratio``) (mm) ...
    section_normal_mm: float = 3.0
    #: ... within this fraction of the body height from the line (the half on the endplate's side).
    section_depth_fraction: float = 0.5
    #: Columns up to this far behind the posterior wall landmark can be endplate (the wall is concave at
    #: the midline, where the landmark is); further back lie the canal and the pedicles (mm).
    posterior_slack_mm: float = 2.0
    #: T1 and T2 ratios to normal marrow that count as marrow of about the normal signal (wider than the
    #: "iso" band of the settings: the signal next to the cortex is blurred).
    section_ratio: tuple[float, float] = (0.7, 1.43)
    #: Axial reading: the axial series must cover this fraction of the marrow just inside the endplate.
    axial_min_coverage: float = 0.9
    #: Axial reading: the least number of grid points of normal marrow its normal signal is taken from.
    axial_min_normal_voxels: int = 20
    #: Reach map: median filter (columns) against single-column noise before the maximum is taken.
    reach_median_px: int = 3


MODIC_PARAMS = ModicParams()


class ModicError(ValueError):
    """The assistant cannot run: missing sequence, different frames of reference, missing landmarks."""


@dataclass
class _Frame:
    center: np.ndarray
    axis: np.ndarray  # inferior -> superior
    ap: np.ndarray  # posterior -> anterior
    lat: np.ndarray
    height: float
    depth: float
    sup: np.ndarray
    inf: np.ndarray


def _frame(lm: Landmarks) -> _Frame:
    needed = ("body_center_lps", "superior_endplate_lps", "inferior_endplate_lps", "posterior_wall_lps",
              "anterior_wall_lps")
    missing = [n.removesuffix("_lps").replace("_", " ") for n in needed if getattr(lm, n) is None]
    if missing:
        raise ModicError("landmarks missing: " + ", ".join(missing))
    sup, inf = np.asarray(lm.superior_endplate_lps), np.asarray(lm.inferior_endplate_lps)
    post, ant = np.asarray(lm.posterior_wall_lps), np.asarray(lm.anterior_wall_lps)
    axis = sup - inf
    height = float(np.linalg.norm(axis))
    if height < 5:
        raise ModicError("the endplates are less than 5 mm apart")
    axis /= height
    ap = (ant - post) - axis * ((ant - post) @ axis)
    depth = float(np.linalg.norm(ant - post))
    if depth < 5 or np.linalg.norm(ap) < 1e-6:
        raise ModicError("the walls are less than 5 mm apart")
    ap /= np.linalg.norm(ap)
    lat = np.cross(ap, axis)
    center = np.asarray(lm.body_center_lps)
    return _Frame(center, axis, ap, lat, height, depth, sup, inf)


def check_frames(volumes: Mapping[str, Volume]) -> None:
    """Raise ModicError unless T1 and T2 are present and all given sequences share a frame of reference."""
    for name in ("T1", "T2"):
        if volumes.get(name) is None:
            raise ModicError(f"the Modic assistant needs a {name} series")
    uids = {k: v.info.frame_of_reference_uid for k, v in volumes.items() if v is not None}
    known = {u for u in uids.values() if u}
    if len(known) > 1:
        detail = ", ".join(f"{k} {u or '(none)'}" for k, u in uids.items())
        raise ModicError(f"the sequences do not share a frame of reference ({detail})")


def classify(ratios: Mapping[str, float], settings: PlanningSettings) -> str:
    """Modic type of one set of ratios (T1, T2[, STIR]) per the domain.md 2.1 table; "none" when
    normal, "" when the combination matches no type."""
    lo, hi = settings.modic_low_ratio, settings.modic_high_ratio

    def level(r: Optional[float]) -> str:
        if r is None:
            return "?"
        return "low" if r < lo else "high" if r > hi else "iso"

    t1, t2, st = level(ratios.get("T1")), level(ratios.get("T2")), level(ratios.get("STIR"))
    has_stir = st != "?"
    if t1 == "iso" and t2 == "iso" and st in ("iso", "?"):
        return "none"
    if t1 == "low" and t2 == "high" and (not has_stir or st == "high"):
        return "1"
    if t1 == "high" and t2 in ("iso", "high") and (not has_stir or st == "low"):
        return "2"
    if t1 == "low" and t2 == "low" and (not has_stir or st == "low"):
        return "3"
    return ""


def _voxel_types(r: dict[str, np.ndarray], settings: PlanningSettings) -> np.ndarray:
    """Per-voxel code: 0 normal, 1/2/3 Modic type, -1 unclassified."""
    lo, hi = settings.modic_low_ratio, settings.modic_high_ratio
    t1, t2 = r["T1"], r["T2"]
    st = r.get("STIR")
    t1_low, t1_high = t1 < lo, t1 > hi
    t2_low, t2_high, t2_iso = t2 < lo, t2 > hi, (t2 >= lo) & (t2 <= hi)
    if st is None:
        st_low = st_high = np.ones_like(t1, bool)
        st_iso = np.ones_like(t1, bool)
    else:
        st_low, st_high = st < lo, st > hi
        st_iso = ~st_low & ~st_high
    out = np.full(t1.shape, -1, dtype=np.int8)
    out[~t1_low & ~t1_high & t2_iso & st_iso] = 0
    out[t1_low & t2_high & st_high] = 1
    out[t1_high & (t2_iso | t2_high) & st_low] = 2
    out[t1_low & t2_low & st_low] = 3
    return out


def _grade(extent_pct: float, settings: PlanningSettings) -> str:
    if extent_pct < settings.modic_grade_a_max_pct:
        return "A"
    if extent_pct <= settings.modic_grade_b_max_pct:
        return "B"
    return "C"


@dataclass
class _Geometry:
    """One endplate on the body grid: where its cortical line is, which columns are endplate, and the
    distance of every grid point from its column's line."""

    on_line: np.ndarray  # (u, l): the column's cortical line lies on the endplate surface
    marrow: np.ndarray  # (u, l): on_line with its holes filled: the columns with marrow under the endplate
    area: np.ndarray  # (u, l): the endplate area: marrow plus the rim (the cortex where the walls begin)
    dist: np.ndarray  # (h, u, l): mm into the body from the column's cortical line (or the surface)


@dataclass
class _AxialReading:
    """The second reading on the axial T2 (see :func:`_axial_reading`)."""

    coverage: float  # fraction of the marrow just inside the endplate that the axial series covers
    share_pct: Optional[float] = None  # the share of the endplate area where the change shows (None: not measured)
    note: str = ""  # why it is not measured


def suggest_level(level: Level, volumes: Mapping[str, Volume], settings: Optional[PlanningSettings] = None,
                  params: ModicParams = MODIC_PARAMS) -> dict[str, ModicSuggestion]:
    """Suggestions for the superior and inferior endplates of ``level``.

    ``volumes`` maps "T1", "T2", optionally "STIR" (sagittal) and optionally "AX_T2" (an axial T2) to
    volumes in one frame of reference. The body is sampled on a grid in the vertebra's frame that holds
    the whole endplate (every sagittal slice through the body); see :func:`_suggest_endplate` for the
    share and the height and :func:`_axial_reading` for the axial T2. An endplate whose cortical line is
    not found on the images is left out of the result (nothing is suggested for it; :func:`run_plan` says
    why)."""
    return _read_level(level, volumes, settings, params)[0]


def _read_level(level: Level, volumes: Mapping[str, Volume], settings: Optional[PlanningSettings],
                params: ModicParams) -> tuple[dict[str, ModicSuggestion], dict[str, str]]:
    """:func:`suggest_level`'s suggestions and, per endplate left out, why."""
    s = settings or PlanningSettings()
    vols = {k: v for k, v in volumes.items() if k in SEQUENCES and v is not None}
    axial = volumes.get(AXIAL)
    check_frames({**vols, **({AXIAL: axial} if axial is not None else {})})
    f = _frame(level.landmarks)
    step = params.sample_step_mm
    hs = np.arange(-f.height / 2 - params.line_search_mm - params.endplate_search_mm,
                   f.height / 2 + params.line_search_mm + params.endplate_search_mm + 1e-6, step)
    half_ap = f.depth / 2 + params.ap_margin_mm
    us = np.arange(-half_ap, half_ap + 1e-6, step)
    half_lat = params.lateral_fraction * f.depth
    ls = np.arange(-half_lat, half_lat + 1e-6, step)
    pts = (f.center[None, None, None, :] + hs[:, None, None, None] * f.axis + us[None, :, None, None] * f.ap
           + ls[None, None, :, None] * f.lat)
    raw: dict[str, np.ndarray] = {}
    seen = np.ones(pts.shape[:-1], bool)  # sampled inside every series
    for name, vol in vols.items():
        if not (vol.contains(f.sup, 2) and vol.contains(f.inf, 2)):
            raise ModicError(f"{level.name} lies outside the {name} series")
        raw[name], inside_vol = _sample_smoothed(vol, pts, params)
        seen &= inside_vol
    # cortical endplates: darkest row (summed normalised T1 + T2) near each landmark, in the central core
    core_u = np.abs(us) <= params.core_fraction * f.depth
    core_l = np.abs(ls) <= params.core_fraction * f.depth
    dark_n = sum(raw[n] / max(float(np.median(raw[n][:, core_u][:, :, core_l])), 1e-6) for n in ("T1", "T2"))
    prof = dark_n[:, core_u][:, :, core_l].mean(axis=(1, 2))
    h_sup = _darkest_near(hs, prof, f.height / 2, params.endplate_search_mm)
    h_inf = _darkest_near(hs, prof, -f.height / 2, params.endplate_search_mm)
    inside = (hs > h_inf + params.cortex_skip_mm) & (hs < h_sup - params.cortex_skip_mm)
    # normal marrow: the rows of the body whose signal is normal on every sequence; start from the centre
    ref = _reference(raw, hs, inside, core_u, core_l, s, params)
    ratios = {n: raw[n] / ref[n] for n in raw}
    types = _voxel_types(ratios, s)
    types[~seen] = OUTSIDE  # outside a series: never marrow
    dark = np.where(seen, ratios["T1"] + ratios["T2"], np.inf)
    # marrow with about the normal signal (the wider ``section_ratio``: blur near the cortex); muscle and
    # cortex are dark on T1 and T2, fat around the body is bright on T1 and T2 but dark on STIR
    lo, hi = params.section_ratio
    normal_like = seen & (ratios["T1"] >= lo) & (ratios["T1"] <= hi) & (ratios["T2"] >= lo) & (ratios["T2"] <= hi)
    if "STIR" in ratios:
        normal_like &= ratios["STIR"] >= lo
    ax = _sample_smoothed(axial, pts, params) if axial is not None else None
    out = {}
    not_read: dict[str, str] = {}
    for which, h_end in (("superior", h_sup), ("inferior", h_inf)):
        sign = 1.0 if which == "superior" else -1.0
        try:
            geo = _endplate_geometry(f, hs, us, ls, dark, normal_like, seen, h_end, sign, params)
        except ModicError as exc:
            not_read[which] = str(exc)  # no cortical line found: nothing is suggested for this endplate
            continue
        out[which] = _suggest_endplate(which, level.name, f, hs, us, ls, h_sup - h_inf, geo, ratios, types, ref,
                                       ax, s, params)
    return out, not_read


def _sample_smoothed(vol: Volume, pts: np.ndarray, params: ModicParams) -> tuple[np.ndarray, np.ndarray]:
    """A volume sampled on the body grid and smoothed (``smooth_mm``), and where the grid lies inside it."""
    v = vol.sample(pts, order=1, fill=np.nan)
    seen = np.isfinite(v)
    if not seen.any():
        return np.full(v.shape, np.nan), seen
    v = np.where(seen, v, np.nanmedian(v))
    return ndimage.gaussian_filter(v, params.smooth_mm / params.sample_step_mm), seen


def _darkest_near(hs: np.ndarray, prof: np.ndarray, h0: float, search_mm: float) -> float:
    near = np.abs(hs - h0) <= search_mm
    if not near.any():
        return h0
    idx = np.flatnonzero(near)
    return float(hs[idx[int(np.argmin(prof[idx]))]])


def _cortical_line(hs: np.ndarray, dark: np.ndarray, h_end: float, params: ModicParams
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per column (u, l): the height of its cortical line and whether it has one.

    The line is the darkest point of T1 + T2 within ``line_search_mm`` of the level's endplate, refined
    between samples (a parabola through the darkest sample and its neighbours). A column has a line when
    that point lies inside the search (not at either end, where the profile only falls towards something
    darker outside it) and is darker than ``line_max_dark``."""
    near = np.flatnonzero(np.abs(hs - h_end) <= params.line_search_mm)
    if near.size < 3:
        raise ModicError("the endplate lies at the edge of the images")
    sub = dark[near]
    i0 = np.argmin(sub, axis=0)
    ic = np.clip(i0, 1, near.size - 2)
    a = np.take_along_axis(sub, (ic - 1)[None], 0)[0]
    b = np.take_along_axis(sub, ic[None], 0)[0]
    c = np.take_along_axis(sub, (ic + 1)[None], 0)[0]
    fin = np.isfinite(a) & np.isfinite(b) & np.isfinite(c)  # outside a series the profile is +inf
    a, b, c = (np.where(fin, x, 0.0) for x in (a, b, c))
    den = a - 2 * b + c
    off = np.where(den > 1e-9, 0.5 * (a - c) / np.maximum(den, 1e-9), 0.0)
    line = hs[near[ic]] + np.clip(off, -0.5, 0.5) * params.sample_step_mm
    valid = fin & (i0 > 0) & (i0 < near.size - 1) & (b <= params.line_max_dark)
    return line, valid


def _component_at_centre(mask: np.ndarray, us: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """The connected part of ``mask`` (u, l) that holds the centre column, or the part nearest to it."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    k = lab[int(np.argmin(np.abs(us))), int(np.argmin(np.abs(ls)))]
    if k == 0:
        uu, ll = np.meshgrid(us, ls, indexing="ij")
        d = np.where(lab > 0, np.hypot(uu, ll), np.inf)
        k = lab.flat[int(np.argmin(d))]
    return lab == k


def _endplate_surface(line: np.ndarray, valid: np.ndarray, core: np.ndarray, us: np.ndarray, ls: np.ndarray,
                      params: ModicParams) -> tuple[np.ndarray, np.ndarray]:
    """The endplate's surface and the columns whose cortical line lies on it.

    A quadratic surface (tilt and concavity) is fitted to the lines of the central columns, then again to
    every column whose line lies within ``line_tolerance_mm`` of it and that is connected to the centre
    through such columns. Returns (surface height per column, on-line mask)."""
    uu, ll = np.meshgrid(us, ls, indexing="ij")
    basis = np.stack([np.ones_like(uu), uu, ll, uu * uu, ll * ll, uu * ll], axis=-1)
    ok = valid & core
    if ok.sum() < params.min_core_columns:
        raise ModicError("no cortical endplate line found near the landmark")
    surf = np.zeros_like(line)
    on = ok
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(basis[ok], line[ok], rcond=None)
        surf = basis @ coef
        on = _component_at_centre(valid & (np.abs(line - surf) <= params.line_tolerance_mm), us, ls)
        if on.sum() < params.min_core_columns:
            raise ModicError("no cortical endplate line found near the landmark")
        ok = on
    return surf, on


def _endplate_geometry(f: _Frame, hs: np.ndarray, us: np.ndarray, ls: np.ndarray, dark: np.ndarray,
                       normal_like: np.ndarray, seen: np.ndarray, h_end: float, sign: float,
                       params: ModicParams) -> _Geometry:
    """The endplate area, bounded by the endplate's own cortical line.

    A column (a line through the body parallel to its axis) is endplate when its cortical line lies on the
    endplate's surface (:func:`_endplate_surface`): across the endplate the line continues smoothly; where
    the body ends, it bends into the walls, and the bone beside the body (the sacral ala beside S1, whose top
    lies below the S1 endplate; the pedicles) has its own, lower line. Behind the posterior wall landmark
    (plus ``posterior_slack_mm``) lie the canal and the pedicles, never endplate. Holes are filled (a Modic
    zone or a Schmorl node can break the line) and the rim (``rim_mm``) is added, within the images."""
    line, valid = _cortical_line(hs, dark, h_end, params)
    core = (np.abs(us)[:, None] <= params.core_fraction * f.depth) & \
        (np.abs(ls)[None, :] <= params.core_fraction * f.depth)
    in_front = (us >= -f.depth / 2 - params.posterior_slack_mm)[:, None]
    # marrow under the line: beside the body, the disc's annulus makes a dark line at the endplate's height
    # too, with muscle and fat under it
    line_dist = sign * (line[None, :, :] - hs[:, None, None])
    near_half = (line_dist >= params.cortex_skip_mm) & (line_dist <= params.section_depth_fraction * f.height)
    has_marrow = (normal_like & near_half).sum(axis=0) * params.sample_step_mm >= params.section_normal_mm
    if (has_marrow & valid & core).sum() < params.min_core_columns:
        # a change fills the half of the body on this endplate's side (grade C): look through the whole body
        whole = (line_dist >= params.cortex_skip_mm) & (line_dist <= f.height - params.cortex_skip_mm)
        has_marrow = (normal_like & whole).sum(axis=0) * params.sample_step_mm >= params.section_normal_mm
    surf, on = _endplate_surface(line, valid & in_front & has_marrow, core, us, ls, params)
    filled = ndimage.binary_fill_holes(on)
    beyond = ndimage.distance_transform_edt(~filled) * params.sample_step_mm
    area = (beyond <= params.rim_mm) & in_front & seen.any(axis=0)
    ref_h = np.where(on, line, surf)
    dist = sign * (ref_h[None, :, :] - hs[:, None, None])
    return _Geometry(on, filled & area, area, dist)


def _reference(raw: dict[str, np.ndarray], hs: np.ndarray, inside: np.ndarray, core_u: np.ndarray,
               core_l: np.ndarray, s: PlanningSettings, params: ModicParams) -> dict[str, float]:
    """Signal of the vertebra's normal marrow, per sequence.

    Starts from the central third of the body. When a Modic zone reaches the centre (grade C), the
    centre is the abnormal part: a run of rows that differs from the centre is taken as normal when
    the centre relative to it reads as a Modic type (domain.md 2.1) while the reverse reads as none
    (the table is not symmetric: relative to type 1 or 2 marrow, normal marrow matches no type)."""
    rows = {n: v[:, core_u][:, :, core_l].mean(axis=(1, 2)) for n, v in raw.items()}
    span = hs[inside]
    mid = inside & (np.abs(hs - (span.min() + span.max()) / 2) <= (span.max() - span.min()) / 6)
    centre = {n: float(np.median(r[mid])) for n, r in rows.items()}

    def iso_rows(ref: dict[str, float]) -> np.ndarray:
        ok = inside.copy()
        for n, r in rows.items():
            rr = r / max(ref[n], 1e-6)
            ok &= (rr >= s.modic_low_ratio) & (rr <= s.modic_high_ratio)
        return ok

    ref = centre
    lab, n_runs = ndimage.label(inside & ~iso_rows(centre))
    best = 0
    for k in range(1, n_runs + 1):
        run = lab == k
        if run.sum() * params.sample_step_mm < params.reference_min_run_mm:
            continue
        other = {n: float(np.median(r[run])) for n, r in rows.items()}
        centre_vs_other = classify({n: centre[n] / max(other[n], 1e-6) for n in rows}, s)
        other_vs_centre = classify({n: other[n] / max(centre[n], 1e-6) for n in rows}, s)
        if centre_vs_other in ("1", "2", "3") and other_vs_centre not in ("1", "2", "3") and run.sum() > best:
            best = int(run.sum())
            ref = other
    ok = iso_rows(ref)
    if ok.sum() >= 3:
        ref = {n: float(np.median(r[ok])) for n, r in rows.items()}
    return {n: max(v, 1e-6) for n, v in ref.items()}


def change_fraction(ratios: Mapping[str, np.ndarray], signature: Mapping[str, float]) -> np.ndarray:
    """How much of each voxel's signal is the change's: 0 for normal marrow (every ratio 1), 1 for the
    change's own signal (``signature``, ratios per sequence), in between for a mix of the two.

    The least-squares position of the voxel's ratios on the line from normal marrow to the signature
    (partial volume mixes the two signals linearly). A voxel counts as changed from 0.5 on, where it is
    more change than normal marrow: the edge of a zone then lies where the image shows half of it, for a
    type with strong contrast (type 1 on STIR) as for one with weak contrast (type 2 on T2), where
    thresholds on each sequence put it where the strongest sequence crosses its threshold."""
    names = [n for n in signature if n in ratios]
    d = np.array([signature[n] - 1.0 for n in names])
    norm = float(d @ d)
    if norm < 1e-9:
        raise ModicError("the change's signal equals normal marrow")
    out = np.zeros(np.shape(ratios[names[0]]))
    for n, dn in zip(names, d):
        out = out + (np.asarray(ratios[n]) - 1.0) * dn
    return out / norm


def _type_name(frac: Mapping[int, float], s: PlanningSettings) -> str:
    mixed = s.modic_mixed_min_pct / 100.0
    if frac.get(1, 0.0) >= mixed and frac.get(2, 0.0) >= mixed:
        return "1/2"
    if frac.get(2, 0.0) >= mixed and frac.get(3, 0.0) >= mixed:
        return "2/3"
    return str(max(frac, key=lambda t: frac[t]))


def _suggest_endplate(which: str, level_name: str, f: _Frame, hs: np.ndarray, us: np.ndarray, ls: np.ndarray,
                      height: float, geo: _Geometry, ratios: dict[str, np.ndarray], types: np.ndarray,
                      ref: dict[str, float], axial: Optional[tuple[np.ndarray, np.ndarray]],
                      s: PlanningSettings, params: ModicParams) -> ModicSuggestion:
    """One endplate: the share of its whole area that the change touches, its type, and the maximum height
    the change reaches from the endplate (Udby grade, domain.md 2.2).

    * The endplate area is :func:`_endplate_geometry`'s: every column through the body whose cortical line
      lies on the endplate, on every sagittal slice. Distances are counted from each column's own line.
    * First reading, by the signal table (domain.md 2.1, thresholds ``modic_low_ratio`` /
      ``modic_high_ratio``): a column is a candidate when at least ``modic_band_majority_pct`` of the
      classified voxels of its band (``cortex_skip_mm`` to ``cortex_skip_mm + modic_band_mm`` inside the
      line) read as a Modic type; the candidates give the endplate's type(s) and each type's own signal
      (the median ratios of its voxels).
    * Second reading, by the change's own signal (:func:`change_fraction`): a column is changed when the
      marrow just inside the cortex (``contact_mm`` from ``contact_from_mm``) is on average at least
      ``modic_band_majority_pct`` % change; its type is the one it is most of. Share: changed columns / the
      endplate area. Mixed types from ``modic_mixed_min_pct``.
    * Height: per changed column, the last voxel going into the body that is at least
      ``modic_band_majority_pct`` % change (gaps up to ``reach_gap_mm``), from the cortical line; the grade
      uses the maximum over the endplate (after a small median filter against single-column noise)."""
    step = params.sample_step_mm
    band_mm = s.modic_band_mm
    skip = params.cortex_skip_mm
    dist, area = geo.dist, geo.area
    in_body = (dist >= skip) & (dist <= height - skip)
    band_mask = in_body & (dist <= skip + band_mm)
    contact = in_body & (dist >= params.contact_from_mm) & (dist <= params.contact_from_mm + params.contact_mm)
    majority = s.modic_band_majority_pct / 100.0
    counts = {t: ((types == t) & band_mask).sum(axis=0) for t in (0, 1, 2, 3)}
    abn_counts = counts[1] + counts[2] + counts[3]
    # among the band's voxels that read as something (normal or a type): blur next to the cortex and at the
    # edge of a zone leaves some voxels matching no row of the table, and they count for neither side
    classified = abn_counts + counts[0]
    abn_frac = np.where(classified > 0, abn_counts / np.maximum(classified, 1), 0.0)
    # next to the body's walls a column runs along the wall's cortex, dark on every sequence like type 3: the
    # first reading leaves out the columns within ``cortex_skip_mm`` of the area's edge (the second reading,
    # by the change's own signal, still reads them)
    inner = ndimage.distance_transform_edt(area) * step > skip
    candidate = area & inner & (abn_frac >= majority)
    cand_type = np.argmax(np.stack([counts[1], counts[2], counts[3]]), axis=0) + 1
    n_area = int(area.sum())
    changed = np.zeros_like(area)
    col_type = np.zeros(area.shape, int)
    fraction: dict[int, np.ndarray] = {}
    # the first reading must find at least the share worth reporting: below it, the few candidates are the
    # blurred cortex of the walls and the endplate, which reads as type 3 (dark on every sequence)
    if candidate.sum() >= s.modic_min_share_pct / 100.0 * n_area > 0:
        sel = cand_type[candidate]
        cand_frac = {t: float((sel == t).mean()) for t in (1, 2, 3)}
        name = _type_name(cand_frac, s)
        present = [int(t) for t in name.split("/")]
        best = np.full(area.shape, -np.inf)
        for t in present:
            own = (types == t) & band_mask & (candidate & (cand_type == t))[None, :, :]
            if not own.any():
                continue
            signature = {n: float(np.median(r[own])) for n, r in ratios.items()}
            fraction[t] = change_fraction(ratios, signature)
            near = np.where(contact, fraction[t], 0.0).sum(axis=0) / np.maximum(contact.sum(axis=0), 1)
            near = np.where(contact.any(axis=0), near, -np.inf)
            col_type = np.where(near > best, t, col_type)
            best = np.maximum(best, near)
        changed = geo.marrow & (best >= majority)
    share = 100.0 * float(changed.sum()) / n_area if n_area else 0.0
    # height reached: per changed column, how far from the endplate the change continues
    reach = np.zeros(area.shape)
    if changed.any():
        abn = np.zeros(types.shape, bool)
        for t, fr in fraction.items():
            abn |= (fr >= majority) & (col_type == t)[None, :, :]
        abn &= in_body
        gap_rows = int(round(params.reach_gap_mm / step))
        order = np.argsort(np.median(dist.reshape(dist.shape[0], -1), axis=1))  # from the endplate inwards
        last = np.zeros(area.shape)
        miss = np.zeros(area.shape, int)
        going = changed.copy()
        for i in order:
            rows_in = in_body[i] & going
            hit = rows_in & abn[i]
            last = np.where(hit, dist[i], last)
            miss = np.where(hit, 0, np.where(rows_in, miss + 1, miss))
            going &= miss <= gap_rows
        reach = np.where(changed, last + step / 2, 0.0)
        reach = np.where(changed, ndimage.median_filter(reach, size=params.reach_median_px, mode="nearest"), 0.0)
    # ratios: over the changed columns' band if any, else over the whole band within the endplate area
    region = band_mask & (changed if changed.any() else area)[None, :, :]
    measured = {n: round(float(np.median(r[region])), 3) for n, r in ratios.items()} if region.any() else \
        {n: round(float(np.median(r[band_mask])), 3) for n, r in ratios.items()}
    if share < s.modic_min_share_pct or not changed.any():
        mtype, grade, share_out, extent = "none", None, 0.0, 0.0
    else:
        sel = col_type[changed]
        mtype = _type_name({t: float((sel == t).mean()) for t in (1, 2, 3)}, s)
        extent = float(reach[changed].max())
        grade = _grade(100.0 * extent / height, s)
        share_out = round(share, 1)
    ax_read = None
    if axial is not None:
        ax_read = _axial_reading(axial, geo, contact, band_mask, types, changed if mtype != "none" else None,
                                 s, params)
    # the region box: the band (or its changed part) in LPS
    idx = np.argwhere(region)
    if idx.size:
        pts = (f.center + hs[idx[:, 0], None] * f.axis + us[idx[:, 1], None] * f.ap + ls[idx[:, 2], None] * f.lat)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        center = tuple(round(float(v), 2) for v in (lo + hi) / 2)
        half = tuple(round(float(v), 2) for v in (hi - lo) / 2 + step / 2)
    else:
        center, half = None, None
    images = [n for n in SEQUENCES if n in ratios] + ([AXIAL] if axial is not None else [])
    expl = _explain(level_name, which, measured, band_mm, mtype, grade, share, extent, height,
                    n_area * step ** 2, ax_read, s, params)
    return ModicSuggestion(modic_type=mtype, grade=grade, share_pct=share_out if mtype != "none" else None,
                           ratios=measured, region_center_lps=center, region_half_size_mm=half, explanation=expl,
                           images=images,
                           axial_share_pct=None if ax_read is None or ax_read.share_pct is None
                           else round(ax_read.share_pct, 1))


def _axial_reading(axial: tuple[np.ndarray, np.ndarray], geo: _Geometry, contact: np.ndarray,
                   band_mask: np.ndarray, types: np.ndarray, changed: Optional[np.ndarray], s: PlanningSettings,
                   params: ModicParams) -> _AxialReading:
    """The changed share read a second time, on the axial T2 sampled on the same body grid.

    The endplate area is the sagittal one (:func:`_endplate_geometry`): on T2 alone the body's marrow
    cannot be told from the muscle beside it, so the axial does not bound the area itself. The marrow just
    inside the endplate (the ``contact_mm`` from ``contact_from_mm`` of the sagittal reading, following each
    column's cortical line) is compared with this body's normal marrow on the axial (its signal where the
    sagittal reads normal marrow). It is measured only where the change shows on T2: the median axial T2
    ratio of the band where the sagittal found the change must lie beyond ``modic_low_ratio`` /
    ``modic_high_ratio`` (type 1 high, type 3 low; type 2 is iso to slightly high on T2, domain.md 2.1). A
    column is changed when its T2 is on average at least ``modic_band_majority_pct`` % of the way from
    normal marrow to the change's own T2. Not measured either when the axial series covers less than
    ``axial_min_coverage`` of that marrow."""
    vals, ax_seen = axial
    want = contact & geo.area[None, :, :]
    n_want = int(want.sum())
    coverage = float((want & ax_seen).sum()) / n_want if n_want else 0.0
    if coverage < params.axial_min_coverage:
        return _AxialReading(coverage, note=f"the axial series covers {100 * coverage:.0f}% of the endplate")
    if changed is None or not changed.any():
        return _AxialReading(coverage, note="no change found on the sagittal images")
    normal = (types == 0) & ax_seen & geo.area[None, :, :] & (geo.dist >= params.cortex_skip_mm)
    if normal.sum() < params.axial_min_normal_voxels:
        return _AxialReading(coverage, note="too little normal marrow of this body on it")
    ratio = vals / max(float(np.median(vals[normal])), 1e-6)
    own = band_mask & ax_seen & changed[None, :, :]
    z = float(np.median(ratio[own])) if own.any() else 1.0
    if s.modic_low_ratio <= z <= s.modic_high_ratio:
        return _AxialReading(coverage, note=f"the change does not show on T2 (T2 ratio {z:.2f}, iso)")
    use = contact & ax_seen
    plane = np.where(use, ratio, 0.0).sum(axis=0) / np.maximum(use.sum(axis=0), 1)
    shows = use.any(axis=0) & ((plane - 1.0) / (z - 1.0) >= s.modic_band_majority_pct / 100.0)
    return _AxialReading(coverage, 100.0 * float((shows & geo.area).sum()) / max(float(geo.area.sum()), 1.0))


def _word(r: float, s: PlanningSettings) -> str:
    return "low" if r < s.modic_low_ratio else "high" if r > s.modic_high_ratio else "iso"


def _explain(level_name: str, which: str, measured: dict[str, float], band: float, mtype: str,
             grade: Optional[str], share: float, extent: float, height: float, area_mm2: float,
             axial: Optional[_AxialReading], s: PlanningSettings, params: ModicParams) -> str:
    side = "below the superior" if which == "superior" else "above the inferior"
    seqs = [n for n in SEQUENCES if n in measured]
    sig = ", ".join(f"{n} {measured[n]:.2f} ({_word(measured[n], s)})" for n in seqs)
    skip = params.cortex_skip_mm
    images = "sagittal " + ", ".join(seqs)
    head = (f"{level_name} {which} endplate, read on the {images}: marrow {skip:g}-{skip + band:g} mm {side} "
            f"endplate compared with the normal marrow of {level_name}; signal ratio {sig} "
            f"(low < {s.modic_low_ratio:g}, high > {s.modic_high_ratio:g}). Endplate area {area_mm2:.0f} mm2: "
            "every sagittal slice through the body, bounded by the endplate's own cortical line.")
    if mtype == "none":
        body = (f" Changed over {share:.0f}% of the endplate, below the {s.modic_min_share_pct:g}% "
                "needed to report a Modic change: none.")
    else:
        body = (f" The change touches {share:.0f}% of the endplate area; its maximum height is {extent:.1f} mm of "
                f"the {height:.1f} mm body height = {100 * extent / height:.0f}% -> grade {grade} "
                f"(A < {s.modic_grade_a_max_pct:g}%, B {s.modic_grade_a_max_pct:g}-{s.modic_grade_b_max_pct:g}%, "
                f"C > {s.modic_grade_b_max_pct:g}% of the body height, by the maximum extent; Udby 2022). Signal "
                f"pattern matches type {mtype} (domain.md 2.1).")
    if axial is None:
        ax = " No axial T2 loaded."
    elif axial.share_pct is None:
        ax = f" Axial T2 (second reading): not measured ({axial.note})."
    else:
        ax = (f" Axial T2 (second reading, measured; not used for the suggestion: its slices are thicker than "
              f"the sagittal pixels across the marrow under the endplate): the change shows over "
              f"{axial.share_pct:.0f}% of the endplate area found on the sagittal.")
    tail = "" if mtype == "none" else " A suggestion: confirm or change it."
    return head + body + ax + tail


@dataclass
class ModicRun:
    """What one run of the assistant over a plan gave: the suggestions, and the endplates it did not read
    with the reason (nothing is suggested for those: the physician decides them from the images)."""

    suggestions: dict[tuple[str, str], ModicSuggestion]  # (level id, "superior"/"inferior") -> suggestion
    not_read: dict[tuple[str, str], str]  # (level id, endplate) -> why it was not read

    def not_read_text(self, plan: Plan) -> str:
        """"L5 superior (why); ..." in the plan's level order, "" when every endplate was read."""
        order = {lv.id: (i, lv.name) for i, lv in enumerate(plan.levels)}
        keys = sorted(self.not_read, key=lambda k: (order.get(k[0], (len(order), ""))[0], ENDPLATES.index(k[1])))
        return "; ".join(f"{order.get(lid, (0, lid))[1]} {which} ({self.not_read[(lid, which)]})"
                         for lid, which in keys)


def run_plan(plan: Plan, volumes: Mapping[str, Volume], level_ids: Optional[Iterable[str]] = None) -> ModicRun:
    """Read every endplate of the plan's levels (or ``level_ids``). A level whose landmarks are incomplete
    or that lies outside the images, and an endplate whose cortical line is not found, are not read; the
    run says why. Raises ModicError when the series cannot be read together (:func:`check_frames`)."""
    wanted = set(level_ids) if level_ids is not None else None
    run = ModicRun({}, {})
    vols = {k: v for k, v in volumes.items() if v is not None}
    check_frames(vols)
    for lv in plan.levels:
        if wanted is not None and lv.id not in wanted:
            continue
        try:
            res, not_read = _read_level(lv, vols, plan.settings, MODIC_PARAMS)
        except ModicError as exc:
            res, not_read = {}, {which: str(exc) for which in ENDPLATES}
        for which, sug in res.items():
            run.suggestions[(lv.id, which)] = sug
        for which, why in not_read.items():
            run.not_read[(lv.id, which)] = why
    return run


def suggest_plan(plan: Plan, volumes: Mapping[str, Volume], level_ids: Optional[Iterable[str]] = None
                 ) -> dict[tuple[str, str], ModicSuggestion]:
    """Suggestions for every endplate of the plan's levels (or ``level_ids``) that :func:`run_plan` reads."""
    return run_plan(plan, volumes, level_ids).suggestions


def volumes_for(session: object) -> dict[str, Volume]:
    """T1, T2 and STIR volumes of a :class:`planner.session.Session`: by the roles the plan gives the
    series, else guessed from the series descriptions of sagittal MR volumes ("T1", "T2", "STIR"); and the
    axial T2 when the plan gives a series that role ("AX_T2")."""
    out: dict[str, Volume] = {}
    for role in SEQUENCES + (AXIAL,):
        vol = session.volume_by_role(role)  # type: ignore[attr-defined]
        if vol is not None:
            out[role] = vol
    if "T1" in out and "T2" in out:
        return out
    for vol in session.volumes().values():  # type: ignore[attr-defined]
        if (vol.info.modality or "MR").upper() != "MR" or abs(vol.slice_normal()[0]) < 0.7:
            continue  # sagittal MR only
        desc = (vol.info.series_description or "").upper().replace(" ", "")
        role = "STIR" if ("STIR" in desc or "TIRM" in desc) else "T1" if "T1" in desc else \
            "T2" if "T2" in desc else None
        if role and role not in out:
            out[role] = vol
    return out


def apply_suggestions(document: object, suggestions: Mapping[tuple[str, str], ModicSuggestion]) -> None:
    """Store suggestions in the plan as one undoable step; decided fields and ``confirmed`` are kept."""
    if not suggestions:
        return
    doc = document
    with doc.edit("Run Modic assistant", levels={lid for lid, _ in suggestions}, detail=f"{len(suggestions)} endplates"):  # type: ignore[attr-defined]
        for (lid, which), sug in suggestions.items():
            doc.set_endplate(lid, which, suggestion=sug)  # type: ignore[attr-defined]


def confirm_suggestion(document: object, level_id: str, which: str) -> None:
    """Accept the assistant's suggestion for one endplate as the physician's decision."""
    plan = document.plan  # type: ignore[attr-defined]
    finding = getattr(plan.level(level_id), which)
    if finding.suggestion is None:
        raise ModicError(f"no suggestion to confirm for the {which} endplate")
    sug = finding.suggestion
    document.set_endplate(level_id, which, modic_type=sug.modic_type,  # type: ignore[attr-defined]
                          grade=sug.grade if sug.modic_type != "none" else None,
                          share_pct=sug.share_pct if sug.modic_type != "none" else None, confirmed=True)
