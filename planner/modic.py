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
the height the abnormal signal reaches from the endplate as a percentage of the body height, with
the cut-offs ``modic_grade_a_max_pct`` / ``modic_grade_b_max_pct``. The share is the percentage of
the endplate's area (sampled columns) whose subchondral band is abnormal.

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

#: Sampling of the body (technical values, not clinical ones).
SAMPLE_STEP_MM = 1.0
#: Columns sampled across the endplate: this share of the AP depth and of the width around the centre.
AP_FRACTION = 0.8
WIDTH_FRACTION = 0.8
#: The cortical endplate is searched this far around the landmark (it is dark on every sequence).
ENDPLATE_SEARCH_MM = 4.0
#: Marrow measured starts this far inside the cortical endplate line.
CORTEX_SKIP_MM = 1.5
#: Smoothing of each sequence before classifying voxels (mm, Gaussian sigma).
SMOOTH_MM = 1.0


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


def suggest_level(level: Level, volumes: Mapping[str, Volume], settings: Optional[PlanningSettings] = None
                  ) -> dict[str, ModicSuggestion]:
    """Suggestions for the superior and inferior endplates of ``level``.

    ``volumes`` maps "T1", "T2" and optionally "STIR" to volumes in one frame of reference."""
    s = settings or PlanningSettings()
    vols = {k: v for k, v in volumes.items() if k in SEQUENCES and v is not None}
    check_frames(vols)
    f = _frame(level.landmarks)
    step = SAMPLE_STEP_MM
    hs = np.arange(-f.height / 2 - ENDPLATE_SEARCH_MM, f.height / 2 + ENDPLATE_SEARCH_MM + 1e-6, step)
    us = np.arange(-AP_FRACTION * f.depth / 2, AP_FRACTION * f.depth / 2 + 1e-6, step)
    # lumbar bodies are wider than deep: sample a square of the depth across, which stays inside the body
    ls = np.arange(-WIDTH_FRACTION * f.depth / 2, WIDTH_FRACTION * f.depth / 2 + 1e-6, step)
    pts = (f.center[None, None, None, :] + hs[:, None, None, None] * f.axis + us[None, :, None, None] * f.ap
           + ls[None, None, :, None] * f.lat)
    raw: dict[str, np.ndarray] = {}
    for name, vol in vols.items():
        if not (vol.contains(f.sup, 2) and vol.contains(f.inf, 2)):
            raise ModicError(f"{level.name} lies outside the {name} series")
        v = vol.sample(pts, order=1, fill=np.nan)
        v = np.where(np.isfinite(v), v, np.nanmedian(v))
        raw[name] = ndimage.gaussian_filter(v, SMOOTH_MM / step)
    # cortical endplates: darkest row (summed normalised T1 + T2) near each landmark
    core_u = np.abs(us) <= 0.25 * f.depth
    core_l = np.abs(ls) <= 0.25 * f.depth
    prof = sum(raw[n][:, core_u][:, :, core_l].mean(axis=(1, 2)) / max(float(np.median(raw[n])), 1e-6)
               for n in ("T1", "T2"))
    h_sup = _darkest_near(hs, prof, f.height / 2)
    h_inf = _darkest_near(hs, prof, -f.height / 2)
    inside = (hs > h_inf + CORTEX_SKIP_MM) & (hs < h_sup - CORTEX_SKIP_MM)
    # normal marrow: the rows of the body whose signal is normal on every sequence; start from the centre
    ref = _reference(raw, hs, inside, core_u, core_l, s)
    ratios = {n: raw[n] / ref[n] for n in raw}
    types = _voxel_types(ratios, s)
    out = {}
    for which in ENDPLATES:
        out[which] = _suggest_endplate(which, level.name, f, hs, us, ls, h_sup, h_inf, inside, ratios, types,
                                       ref, s)
    return out


def _darkest_near(hs: np.ndarray, prof: np.ndarray, h0: float) -> float:
    near = np.abs(hs - h0) <= ENDPLATE_SEARCH_MM
    if not near.any():
        return h0
    idx = np.flatnonzero(near)
    return float(hs[idx[int(np.argmin(prof[idx]))]])


def _reference(raw: dict[str, np.ndarray], hs: np.ndarray, inside: np.ndarray, core_u: np.ndarray,
               core_l: np.ndarray, s: PlanningSettings) -> dict[str, float]:
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
        if run.sum() * SAMPLE_STEP_MM < 3.0:
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


def _suggest_endplate(which: str, level_name: str, f: _Frame, hs: np.ndarray, us: np.ndarray, ls: np.ndarray,
                      h_sup: float, h_inf: float, inside: np.ndarray, ratios: dict[str, np.ndarray],
                      types: np.ndarray, ref: dict[str, float], s: PlanningSettings) -> ModicSuggestion:
    step = SAMPLE_STEP_MM
    height = h_sup - h_inf
    band = s.modic_band_mm
    if which == "superior":
        dist = h_sup - hs  # distance from the endplate into the body
    else:
        dist = hs - h_inf
    band_rows = inside & (dist <= CORTEX_SKIP_MM + band)
    body_rows = inside
    # per column: the majority type in the band (abnormal when at least half the band is one Modic type)
    bt = types[band_rows]  # (rows, u, l)
    n_rows = bt.shape[0]
    counts = {t: (bt == t).sum(axis=0) for t in (1, 2, 3)}
    abn_counts = counts[1] + counts[2] + counts[3]
    abnormal_col = abn_counts >= max(1, n_rows / 2)
    n_cols = abnormal_col.size
    share = 100.0 * abnormal_col.sum() / n_cols if n_cols else 0.0
    # height reached: per abnormal column, how far from the endplate the abnormal signal continues
    order = np.argsort(dist)
    body_idx = [i for i in order if body_rows[i]]
    reach = np.zeros(abnormal_col.shape)
    if abnormal_col.any():
        abn = np.isin(types, (1, 2, 3))
        for iu, il in zip(*np.nonzero(abnormal_col)):
            run = 0.0
            miss = 0
            for i in body_idx:
                if abn[i, iu, il]:
                    run = dist[i] - CORTEX_SKIP_MM
                    miss = 0
                else:
                    miss += 1
                    if miss * step > 2.0:
                        break
            reach[iu, il] = max(run, 0.0) + step / 2
    # ratios: over the abnormal band voxels if any, else over the whole band
    region = np.zeros(types.shape, bool)
    region[band_rows] = True
    region &= np.broadcast_to(abnormal_col[None], types.shape) if abnormal_col.any() else True
    measured = {n: round(float(np.median(r[region])), 3) for n, r in ratios.items()}
    # type: the share of each Modic type among the abnormal columns
    if share < s.modic_min_share_pct or not abnormal_col.any():
        mtype, grade, share_out, extent = "none", None, 0.0, 0.0
    else:
        col_type = np.argmax(np.stack([counts[1], counts[2], counts[3]]), axis=0) + 1
        sel = col_type[abnormal_col]
        frac = {t: float((sel == t).mean()) for t in (1, 2, 3)}
        mixed = 0.25
        if frac[1] >= mixed and frac[2] >= mixed:
            mtype = "1/2"
        elif frac[2] >= mixed and frac[3] >= mixed:
            mtype = "2/3"
        else:
            mtype = str(max(frac, key=lambda t: frac[t]))
        extent = float(np.percentile(reach[abnormal_col], 75))
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
    expl = _explain(level_name, which, measured, ref, band, mtype, grade, share, extent, height, s)
    return ModicSuggestion(modic_type=mtype, grade=grade, share_pct=share_out if mtype != "none" else None,
                           ratios=measured, region_center_lps=center, region_half_size_mm=half, explanation=expl)


def _word(r: float, s: PlanningSettings) -> str:
    return "low" if r < s.modic_low_ratio else "high" if r > s.modic_high_ratio else "iso"


def _explain(level_name: str, which: str, measured: dict[str, float], ref: dict[str, float], band: float,
             mtype: str, grade: Optional[str], share: float, extent: float, height: float,
             s: PlanningSettings) -> str:
    side = "below the superior" if which == "superior" else "above the inferior"
    sig = ", ".join(f"{n} {measured[n]:.2f} ({_word(measured[n], s)})" for n in SEQUENCES if n in measured)
    head = (f"{level_name} {which} endplate: marrow {CORTEX_SKIP_MM:g}-{CORTEX_SKIP_MM + band:g} mm {side} "
            f"endplate compared with the normal marrow of {level_name}; signal ratio {sig} "
            f"(low < {s.modic_low_ratio:g}, high > {s.modic_high_ratio:g}).")
    if mtype == "none":
        return (f"{head} Abnormal signal over {share:.0f}% of the endplate, below the {s.modic_min_share_pct:g}% "
                "needed to report a Modic change: none.")
    return (f"{head} Abnormal over {share:.0f}% of the endplate; it reaches {extent:.1f} mm of the "
            f"{height:.1f} mm body height = {100 * extent / height:.0f}% -> grade {grade} "
            f"(A < {s.modic_grade_a_max_pct:g}%, B {s.modic_grade_a_max_pct:g}-{s.modic_grade_b_max_pct:g}%, "
            f"C > {s.modic_grade_b_max_pct:g}%; Udby 2022). Signal pattern matches type {mtype} "
            "(domain.md 2.1). A suggestion: confirm or change it.")


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
    topics = sorted({("level", lid) for lid, _ in suggestions})
    with doc.edit("Run Modic assistant", topics, detail=f"{len(suggestions)} endplates"):  # type: ignore[attr-defined]
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
