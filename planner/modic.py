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
the **maximum** height the abnormal signal reaches from the endplate, as a percentage of the body
height, with the cut-offs ``modic_grade_a_max_pct`` / ``modic_grade_b_max_pct``. The share is the
percentage of the **whole endplate area** whose subchondral band is abnormal: the body is sampled on a
grid through every sagittal slice it spans, the endplate area is the body's section found on the
images (:func:`_endplate_section`), and distances are counted from each column's own cortical
endplate (concave, tilted endplates). All thresholds that change the result are settings; the image
sampling values are :class:`ModicParams`. Checked against the demo phantom's ground truth
(tests/test_modic_demo.py); no real scan with Modic labels exists in ../shared/data.

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

#: Sequences the assistant reads, in display order.
SEQUENCES: tuple[str, ...] = ("T1", "T2", "STIR")
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
    #: times wider than deep; the grid must hold the whole endplate).
    lateral_fraction: float = 0.9
    #: The central core (fraction of the AP depth on either side of the centre) used for the
    #: endplate profile and the normal marrow.
    core_fraction: float = 0.25
    #: The cortical endplate is searched this far around the landmark (it is dark on every sequence).
    endplate_search_mm: float = 4.0
    #: Per column, the endplate is searched this far around the level's endplate (concave endplates).
    column_search_mm: float = 2.5
    #: Marrow measured starts this far inside the cortical endplate line.
    cortex_skip_mm: float = 2.5
    #: Smoothing of each sequence before classifying voxels (mm, Gaussian sigma).
    smooth_mm: float = 1.0
    #: The height reached: abnormal signal may be interrupted for this long and still continue (mm).
    reach_gap_mm: float = 2.0
    #: A run of rows that differs from the centre must be this long to serve as normal marrow (mm).
    reference_min_run_mm: float = 3.0
    #: Endplate area: a column is part of the body when it holds at least this much normal marrow (mm).
    section_normal_mm: float = 3.0
    #: Endplate area: the marrow is looked for this far into the body from the endplate (fraction of the body
    #: height: the half on the endplate's side, where the body's section is the endplate's; the whole body
    #: when a zone fills that half).
    section_depth_fraction: float = 0.5
    #: Endplate area: the widest body counted, as a multiple of its AP depth (lumbar bodies are about 1.3-1.5
    #: times wider than deep, e.g. L5 about 50 x 36 mm, domain.md 5.2; beside S1 lies the sacral ala).
    max_width_to_depth: float = 1.6
    #: Endplate area: T1 and T2 ratios to normal marrow that count as marrow (wider than the "iso" band of
    #: the settings: the signal next to the cortex is blurred).
    section_ratio: tuple[float, float] = (0.7, 1.43)
    #: Endplate area: columns up to this far behind the posterior wall landmark count (the wall is
    #: concave at the midline, where the landmark is); further back lie the pedicles (mm).
    posterior_slack_mm: float = 2.0
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


def suggest_level(level: Level, volumes: Mapping[str, Volume], settings: Optional[PlanningSettings] = None,
                  params: ModicParams = MODIC_PARAMS) -> dict[str, ModicSuggestion]:
    """Suggestions for the superior and inferior endplates of ``level``.

    ``volumes`` maps "T1", "T2" and optionally "STIR" to volumes in one frame of reference. The body is
    sampled on a grid in the vertebra's frame that holds the whole endplate (every sagittal slice through
    the body); see :func:`_suggest_endplate` for the share and the height."""
    s = settings or PlanningSettings()
    vols = {k: v for k, v in volumes.items() if k in SEQUENCES and v is not None}
    check_frames(vols)
    f = _frame(level.landmarks)
    step = params.sample_step_mm
    hs = np.arange(-f.height / 2 - params.endplate_search_mm, f.height / 2 + params.endplate_search_mm + 1e-6, step)
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
        v = vol.sample(pts, order=1, fill=np.nan)
        seen &= np.isfinite(v)
        v = np.where(np.isfinite(v), v, np.nanmedian(v))
        raw[name] = ndimage.gaussian_filter(v, params.smooth_mm / step)
    types_seen = seen
    # cortical endplates: darkest row (summed normalised T1 + T2) near each landmark, in the central core
    core_u = np.abs(us) <= params.core_fraction * f.depth
    core_l = np.abs(ls) <= params.core_fraction * f.depth
    dark = sum(raw[n] / max(float(np.median(raw[n][:, core_u][:, :, core_l])), 1e-6) for n in ("T1", "T2"))
    prof = dark[:, core_u][:, :, core_l].mean(axis=(1, 2))
    h_sup = _darkest_near(hs, prof, f.height / 2, params.endplate_search_mm)
    h_inf = _darkest_near(hs, prof, -f.height / 2, params.endplate_search_mm)
    inside = (hs > h_inf + params.cortex_skip_mm) & (hs < h_sup - params.cortex_skip_mm)
    # normal marrow: the rows of the body whose signal is normal on every sequence; start from the centre
    ref = _reference(raw, hs, inside, core_u, core_l, s, params)
    ratios = {n: raw[n] / ref[n] for n in raw}
    types = _voxel_types(ratios, s)
    types[~types_seen] = OUTSIDE  # outside a series: never marrow
    out = {}
    for which, h_end in (("superior", h_sup), ("inferior", h_inf)):
        sign = 1.0 if which == "superior" else -1.0
        h_col = _column_endplates(hs, dark, h_end, params.column_search_mm)
        out[which] = _suggest_endplate(which, level.name, f, hs, us, ls, sign, h_col, h_sup - h_inf, ratios, types,
                                       ref, s, params)
    return out


def _darkest_near(hs: np.ndarray, prof: np.ndarray, h0: float, search_mm: float) -> float:
    near = np.abs(hs - h0) <= search_mm
    if not near.any():
        return h0
    idx = np.flatnonzero(near)
    return float(hs[idx[int(np.argmin(prof[idx]))]])


def _column_endplates(hs: np.ndarray, dark: np.ndarray, h_end: float, search_mm: float) -> np.ndarray:
    """Per column (u, l): the height of the darkest row within ``search_mm`` of the level's endplate
    (concave and tilted endplates follow the cortex, not the landmark plane)."""
    near = np.flatnonzero(np.abs(hs - h_end) <= search_mm)
    if near.size == 0:
        return np.full(dark.shape[1:], h_end)
    return hs[near[np.argmin(dark[near], axis=0)]]


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


def _endplate_section(has_marrow: np.ndarray, us: np.ndarray, ls: np.ndarray) -> np.ndarray:
    """The endplate's area on the (u, l) grid: the columns that hold normal marrow somewhere between the
    endplates, connected to the centre column, with the holes filled (a Modic zone that reaches through
    much of the column is still inside). Fat and muscle around the body hold no normal marrow and are
    cut off by the cortex, so they never count as endplate."""
    lab, n = ndimage.label(has_marrow)
    if n == 0:
        return np.zeros_like(has_marrow)
    iu, il = int(np.argmin(np.abs(us))), int(np.argmin(np.abs(ls)))
    k = lab[iu, il]
    if k == 0:  # the centre column itself is changed throughout: take the component nearest to it
        uu, ll = np.meshgrid(us, ls, indexing="ij")
        d = np.where(lab > 0, np.hypot(uu, ll), np.inf)
        k = lab.flat[int(np.argmin(d))]
    return ndimage.binary_fill_holes(lab == k)


def _suggest_endplate(which: str, level_name: str, f: _Frame, hs: np.ndarray, us: np.ndarray, ls: np.ndarray,
                      sign: float, h_col: np.ndarray, height: float, ratios: dict[str, np.ndarray],
                      types: np.ndarray, ref: dict[str, float], s: PlanningSettings,
                      params: ModicParams) -> ModicSuggestion:
    """One endplate: the share of its whole area whose subchondral band reads as a Modic type, and the
    maximum height the abnormal signal reaches from the endplate (Udby grade, domain.md 2.2).

    * Per column of the grid (a line through the body parallel to its axis), distances are counted from
      that column's own cortical endplate.
    * Band: ``cortex_skip_mm`` to ``cortex_skip_mm + modic_band_mm`` inside the endplate. A column is
      abnormal when at least ``modic_band_majority_pct`` of its band reads as a Modic type; its type is the
      band's majority type.
    * Endplate area: the columns whose band reads as marrow (normal or a Modic type) and that are reached
      from the centre without crossing the cortex (:func:`_endplate_section`); every sagittal slice
      through the body contributes.
    * Share: abnormal columns of that area / the area. Height: per abnormal column, the last abnormal row
      going into the body (gaps up to ``reach_gap_mm``), from the cortical endplate; the grade uses the
      maximum over the endplate (after a small median filter against single-column noise)."""
    step = params.sample_step_mm
    band = s.modic_band_mm
    dist = sign * (h_col[None, :, :] - hs[:, None, None])  # mm into the body from each column's endplate
    in_body = (dist >= params.cortex_skip_mm) & (dist <= height - params.cortex_skip_mm)
    band_mask = in_body & (dist <= params.cortex_skip_mm + band)
    counts = {t: ((types == t) & band_mask).sum(axis=0) for t in (0, 1, 2, 3)}
    abn_counts = counts[1] + counts[2] + counts[3]
    # marrow near this endplate: near the normal marrow's signal on every sequence (within the wider
    # ``section_ratio`` band; blur near the cortex leaves it short of "iso")
    near = in_body & (dist <= params.section_depth_fraction * height)
    lo, hi = params.section_ratio
    # muscle and cortex are dark on T1 and T2; fat around the body is bright on T1 and T2 but dark on STIR
    near_normal = (ratios["T1"] >= lo) & (ratios["T1"] <= hi) & (ratios["T2"] >= lo) & (ratios["T2"] <= hi) & \
        (types != OUTSIDE)
    if "STIR" in ratios:
        near_normal &= ratios["STIR"] >= lo
    normal_mm = (near_normal & near).sum(axis=0) * step
    if not (normal_mm >= params.section_normal_mm).any():  # a zone through this half: the whole body
        normal_mm = (near_normal & in_body).sum(axis=0) * step
    # among the band's voxels that read as something (normal or a type): blur next to the cortex and at the
    # edge of a zone leaves some voxels matching no row of the table, and they count for neither side
    classified = abn_counts + counts[0]
    abn_frac = np.where(classified > 0, abn_counts / np.maximum(classified, 1), 0.0)
    majority = s.modic_band_majority_pct / 100.0
    # the body ends at the posterior wall (its midline landmark, plus the slack of a concave wall); behind
    # it lie the pedicles, whose marrow must not count as endplate
    in_front = us >= -f.depth / 2 - params.posterior_slack_mm
    # lumbar and sacral bodies are at most about 1.5 times as wide as they are deep; beside S1 the marrow
    # goes on into the sacral ala, which is not endplate
    within = np.abs(ls) <= params.max_width_to_depth * f.depth / 2
    section = _endplate_section((normal_mm >= params.section_normal_mm) & in_front[:, None] & within[None, :],
                                us, ls)
    abnormal_col = section & (abn_frac >= majority)
    n_cols = int(section.sum())
    share = 100.0 * float(abnormal_col.sum()) / n_cols if n_cols else 0.0
    # height reached: per abnormal column, how far from the endplate the abnormal signal continues
    abn = np.isin(types, (1, 2, 3)) & in_body
    reach = np.zeros(abnormal_col.shape)
    if abnormal_col.any():
        # rows from the endplate into the body (the same order for every column: dist is monotonic in h)
        order = np.argsort(dist[:, 0, 0]) if sign < 0 else np.argsort(-hs)
        gap_rows = int(round(params.reach_gap_mm / step))
        last = np.zeros(abnormal_col.shape)
        miss = np.zeros(abnormal_col.shape, int)
        going = abnormal_col.copy()
        for i in order:
            rows_in = in_body[i] & going
            hit = rows_in & abn[i]
            last = np.where(hit, dist[i], last)
            miss = np.where(hit, 0, np.where(rows_in, miss + 1, miss))
            going &= miss <= gap_rows
        reach = np.where(abnormal_col, last + step / 2, 0.0)
        reach = np.where(abnormal_col, ndimage.median_filter(reach, size=params.reach_median_px,
                                                             mode="nearest"), 0.0)
    # ratios: over the abnormal band voxels if any, else over the whole band within the endplate area
    region = band_mask & (abnormal_col if abnormal_col.any() else section)[None, :, :]
    measured = {n: round(float(np.median(r[region])), 3) for n, r in ratios.items()} if region.any() else \
        {n: round(float(np.median(r[band_mask])), 3) for n, r in ratios.items()}
    if share < s.modic_min_share_pct or not abnormal_col.any():
        mtype, grade, share_out, extent = "none", None, 0.0, 0.0
    else:
        col_type = np.argmax(np.stack([counts[1], counts[2], counts[3]]), axis=0) + 1
        sel = col_type[abnormal_col]
        frac = {t: float((sel == t).mean()) for t in (1, 2, 3)}
        mixed = s.modic_mixed_min_pct / 100.0
        if frac[1] >= mixed and frac[2] >= mixed:
            mtype = "1/2"
        elif frac[2] >= mixed and frac[3] >= mixed:
            mtype = "2/3"
        else:
            mtype = str(max(frac, key=lambda t: frac[t]))
        extent = float(reach[abnormal_col].max())
        grade = _grade(100.0 * extent / height, s)
        share_out = round(share, 1)
    # the region box: the band (or its abnormal part) in LPS
    idx = np.argwhere(region)
    if idx.size:
        pts = (f.center + hs[idx[:, 0], None] * f.axis + us[idx[:, 1], None] * f.ap + ls[idx[:, 2], None] * f.lat)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        center = tuple(round(float(v), 2) for v in (lo + hi) / 2)
        half = tuple(round(float(v), 2) for v in (hi - lo) / 2 + step / 2)
    else:
        center, half = None, None
    expl = _explain(level_name, which, measured, ref, band, mtype, grade, share, extent, height, n_cols, s, params)
    return ModicSuggestion(modic_type=mtype, grade=grade, share_pct=share_out if mtype != "none" else None,
                           ratios=measured, region_center_lps=center, region_half_size_mm=half, explanation=expl)


def _word(r: float, s: PlanningSettings) -> str:
    return "low" if r < s.modic_low_ratio else "high" if r > s.modic_high_ratio else "iso"


def _explain(level_name: str, which: str, measured: dict[str, float], ref: dict[str, float], band: float,
             mtype: str, grade: Optional[str], share: float, extent: float, height: float, area_mm2: int,
             s: PlanningSettings, params: ModicParams) -> str:
    side = "below the superior" if which == "superior" else "above the inferior"
    sig = ", ".join(f"{n} {measured[n]:.2f} ({_word(measured[n], s)})" for n in SEQUENCES if n in measured)
    skip = params.cortex_skip_mm
    head = (f"{level_name} {which} endplate: marrow {skip:g}-{skip + band:g} mm {side} "
            f"endplate compared with the normal marrow of {level_name}; signal ratio {sig} "
            f"(low < {s.modic_low_ratio:g}, high > {s.modic_high_ratio:g}). Endplate area measured over "
            f"{area_mm2 * params.sample_step_mm ** 2:.0f} mm2 (every sagittal slice through the body).")
    if mtype == "none":
        return (f"{head} Abnormal signal over {share:.0f}% of the endplate, below the {s.modic_min_share_pct:g}% "
                "needed to report a Modic change: none.")
    return (f"{head} Abnormal over {share:.0f}% of the endplate area; its maximum height is {extent:.1f} mm of "
            f"the {height:.1f} mm body height = {100 * extent / height:.0f}% -> grade {grade} "
            f"(A < {s.modic_grade_a_max_pct:g}%, B {s.modic_grade_a_max_pct:g}-{s.modic_grade_b_max_pct:g}%, "
            f"C > {s.modic_grade_b_max_pct:g}% of the body height, by the maximum extent; Udby 2022). Signal "
            f"pattern matches type {mtype} (domain.md 2.1). A suggestion: confirm or change it.")


def suggest_plan(plan: Plan, volumes: Mapping[str, Volume], level_ids: Optional[Iterable[str]] = None
                 ) -> dict[tuple[str, str], ModicSuggestion]:
    """Suggestions for every endplate of the plan's levels (or ``level_ids``) with complete landmarks.

    Levels whose landmarks are incomplete or that lie outside the images are skipped."""
    wanted = set(level_ids) if level_ids is not None else None
    out: dict[tuple[str, str], ModicSuggestion] = {}
    vols = {k: v for k, v in volumes.items() if v is not None}
    check_frames(vols)
    for lv in plan.levels:
        if wanted is not None and lv.id not in wanted:
            continue
        try:
            res = suggest_level(lv, vols, plan.settings)
        except ModicError:
            continue
        for which, sug in res.items():
            out[(lv.id, which)] = sug
    return out


def volumes_for(session: object) -> dict[str, Volume]:
    """T1, T2 and STIR volumes of a :class:`planner.session.Session`: by the roles the plan gives the
    series, else guessed from the series descriptions of sagittal MR volumes ("T1", "T2", "STIR")."""
    out: dict[str, Volume] = {}
    for role in SEQUENCES:
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
