#!/usr/bin/env python3
"""Train the MRI vertebral-body network (a compact 2D U-Net on sagittal planes) and export it to ONNX.

Usage (training needs PyTorch, which is NOT a requirement of the application; use a separate venv, with the
application's own requirements too: the script reads the planes through ``planner.levels``, which imports the
imaging package and so pydicom and the rest)::

    python3 -m venv /work/train-venv
    /work/train-venv/bin/pip install -r requirements.txt torch==2.13.0 onnx
    nice -n 10 /work/train-venv/bin/python scripts/train_mri_bodies.py --data ../shared/data/lumbar_mri_vb \\
        --out /tmp/mri-bodies --demo-phantom [--iters 1500] [--threads 2] [--only-fold K | --only-final] \\
        [--member NAME] [--partial]

What it does (fixed seeds; the same command gives the same model on the same machine):

1. Reads the labelled scans ``<case>_mr.nii.gz`` / ``<case>_vb.nii.gz`` / ``<case>.json`` of DATA (the
   ``lumbar_mri_vb`` set: 1 mm sagittal MRI with manual vertebral-body labels, VerSe numbering).
2. Target per voxel: background, vertebral body, L5 body, S1 body. Bodies above the highest and below the
   lowest labelled body are in the image but not labelled: beyond the planes fitted to those bodies' outer
   endplates (+ ``IGNORE_MARGIN_MM``) the loss ignores the pixels. With ``--partial`` it keeps what the
   labels still say there (:data:`PARTIAL_CLASSES`): above the highest labelled body nothing is L5 or S1;
   below a lowest labelled L5 (the sacrum and the pelvis) nothing is a lumbar body, only background or S1.
   Tried and not shipped (README, "Partial labels"): held-out it names all 21 scans without marks and reads the
   Modic-like bands better, but it joins the demo phantom's L4 and L5 across their kissing Modic bands.
   With ``--demo-phantom`` (the shipped model), the application's demo phantom is added to every training set
   as three more scans (its T1, T2 and STIR, :func:`phantom_cases`), labelled exactly from its geometry and
   never held out: its flat images and Modic bands as dark as a disc are unlike the real scans, and without it
   the network took the phantom's S1 for L5. The held-out numbers are measured on the real scans only; the
   demo's tests are then a check of the pipeline on a case the network has seen, not evidence.
3. **Cross-validation**: the patients are split into 3 folds (scans of one patient stay together:
   VB1_02 and VB1_03 are one patient), each fold's model is trained on the other two thirds and exported
   to ``OUT/fold<K>.onnx``; ``OUT/folds.json`` names the held-out cases of each fold. The held-out
   segmentation numbers are printed here; the landmark numbers of the held-out scans come from
   ``bench/anatomy_bench.py --mri-cv OUT`` (the application's full pipeline with each fold's model).
4. The shipped model is trained on all scans with the same settings: ``OUT/mri_bodies.onnx`` (copy it to
   ``resources/models/``).

**Two members, one model.** Every model above is the union of two networks of the same shape, trained with
the same seeds and differing only in their Modic-like augmentation (:data:`MEMBERS`):

- ``zones``: soft elliptic zones against an endplate with the marrow signal scaled by 0.25-0.7 or 1.4-2.2.
  Alone it reads these Modic-free scans best (held-out 117/117 levels with marks, 20/21 scans without),
  but misses a body whose marrow is changed over half its height as dark as the disc (the demo's L5).
- ``bands``: bands along one or both endplates of 10-60 % of the body's height, up to the plane's darkest
  or brightest tissue, with degenerated or bright discs. It outlines such bodies, but alone it misses more
  of the edge bodies (T12, S1) of the Modic-free scans (held-out 106/117 with marks, 12/21 without).

``--member mixed`` trains a third network, not part of the shipped model, with both augmentations (the zones on
30 %, the bands on 55 % of the samples; tried with ``--iters 3000``): alone it missed edge bodies (held-out folds
0-1: 81/85 levels with marks, 2 wrong ladders without), and joined to ``zones`` it still made 2 wrong ladders
without marks (README, "Modic changes on the real scans").

Their union (:func:`write_union`): background is the smaller of the two backgrounds, and the body classes
share the rest in the proportions of their mean, so a body either member sees is outlined. Each member is
written to ``OUT/<member>/``, the union of the two to ``OUT/``; ``--member`` trains one member only (the
union is written once both are there).

Input: :mod:`planner.levels.mri_input` (shared with the application): sagittal planes at 2 mm, thin or
averaged over a slab (thick acquired slices), scaled by the plane's own percentiles. Augmentation: slab
thickness 1-6 mm, rotation, scale, intensity curves (gamma, random tone curves, inversion), bias field,
noise and blur: the scans are T1, T2, TIRM and water-fat images with 8-bit intensities and no headers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.levels.mri_input import CLASSES, GRID_MM, inside_volume, normalise_plane, sample_plane, slab_offsets

#: VerSe label numbers of the classes (other bodies are "body").
L5_LABEL, S1_LABEL = 24, 26
IGNORE = 255
#: Partial labels (``--partial``): what the labels still say where no body is labelled. Above the highest
#: labelled body lie the bodies of the spine above it, which are neither L5 nor S1 (background or body);
#: below a lowest labelled L5 lie the sacrum and the pelvis, where nothing is lumbar (background or S1).
ABOVE_TOP, BELOW_L5 = 253, 254
#: The classes each partial label allows (the loss asks their probabilities to sum to one).
PARTIAL_CLASSES = {ABOVE_TOP: (0, 1), BELOW_L5: (0, 3)}
#: Pixels farther than this beyond the outer endplate of the highest / lowest labelled body are ignored.
IGNORE_MARGIN_MM = 4.0
#: Training patch (rows, cols) in pixels of GRID_MM.
PATCH = (128, 96)
#: Width of the first layer; doubled at each of the four levels down (capped at CAP).
WIDTH, CAP = 12, 96
N_FOLDS = 3
#: The two networks of every model (module docstring): their Modic-like augmentation.
MEMBERS = ("zones", "bands")
#: Networks the script can train that are not part of the shipped model (tried; see the module docstring).
EXTRA_MEMBERS = ("mixed",)


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Case:
    name: str
    group: str
    image: np.ndarray  # float32, array axes as stored in the NIfTI file
    target: np.ndarray  # uint8 classes, IGNORE where unknown
    lps_to_index: np.ndarray
    index_to_lps: np.ndarray
    body_lps: np.ndarray  # (n, 3) LPS points of labelled body voxels (a subsample)
    x_range: tuple[float, float]  # LPS x extent of the labelled bodies
    weight: float = 1.0  # sampling weight (doubled with a labelled S1)


def is_body(tgt: np.ndarray) -> np.ndarray:
    """Pixels labelled as one of the body classes (not background, ignored or a partial label)."""
    return (tgt >= 1) & (tgt <= 3)


def patient_group(case: str) -> str:
    """Scans of one patient share a group (the data README: VB1_02 and VB1_03 are the same patient)."""
    return "VB1_02" if case == "VB1_03" else case


def _outer_plane(mask: np.ndarray, top: bool) -> tuple[np.ndarray, float]:
    """Least-squares plane i = a*j + b*k + c through the outer endplate voxels of a body (axis 0 runs
    head to feet). Returns ((a, b), c)."""
    shifted = np.zeros_like(mask)
    if top:
        shifted[1:] = mask[:-1]
    else:
        shifted[:-1] = mask[1:]
    surf = mask & ~shifted
    i, j, k = np.nonzero(surf)
    a = np.stack([j, k, np.ones_like(j)], 1).astype(float)
    coef, *_ = np.linalg.lstsq(a, i.astype(float), rcond=None)
    return coef[:2], float(coef[2])


def load_case(data: Path, name: str, partial: bool = False) -> Case:
    import nibabel as nib

    img = nib.load(str(data / f"{name}_mr.nii.gz"))
    lab = np.asarray(nib.load(str(data / f"{name}_vb.nii.gz")).dataobj).astype(np.int16)
    ras = img.affine
    index_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    # voxel axis 0 must run head to feet (the data README); the ignore planes rely on it
    if not index_to_lps[2, 0] < 0:
        raise ValueError(f"{name}: voxel axis 0 does not run head to feet")
    spacing = np.linalg.norm(index_to_lps[:3, :3], axis=0)
    target = np.zeros(lab.shape, np.uint8)
    target[lab > 0] = 1
    target[lab == L5_LABEL] = 2
    target[lab == S1_LABEL] = 3
    values = sorted(int(v) for v in np.unique(lab) if v > 0)
    ii, jj, kk = np.meshgrid(np.arange(lab.shape[0]), np.arange(lab.shape[1]), np.arange(lab.shape[2]),
                             indexing="ij", sparse=True)
    margin = IGNORE_MARGIN_MM / spacing[0]
    (a, b), c = _outer_plane(lab == values[0], top=True)
    target[ii < a * jj + b * kk + c - margin] = ABOVE_TOP if partial else IGNORE
    (a, b), c = _outer_plane(lab == values[-1], top=False)
    target[ii > a * jj + b * kk + c + margin] = BELOW_L5 if partial and values[-1] == L5_LABEL else IGNORE
    vox = np.argwhere(lab > 0)
    rng = np.random.default_rng(0)
    vox = vox[rng.choice(len(vox), size=min(len(vox), 20000), replace=False)]
    body_lps = vox @ index_to_lps[:3, :3].T + index_to_lps[:3, 3]
    xs = body_lps[:, 0]
    return Case(name, patient_group(name), np.asarray(img.dataobj).astype(np.float32), target,
                np.linalg.inv(index_to_lps), index_to_lps, body_lps, (float(xs.min()), float(xs.max())))


def load_cases(data: Path, partial: bool = False) -> list[Case]:
    names = sorted(p.name[:-len(".json")] for p in data.glob("*.json"))
    if not names:
        raise SystemExit(f"{data}: no <case>.json found (expected the lumbar_mri_vb data set)")
    return [load_case(data, n, partial) for n in names]


#: The demo phantom's sagittal sequences added to every training set with ``--demo-phantom`` (never held out).
PHANTOM_SEQUENCES = ("T1", "T2", "STIR")
#: Their summed sampling weight, in scans: together they are drawn as often as this many real scans with a
#: labelled S1 (each real scan weighs 1, twice that with a labelled S1, as the phantom's have).
PHANTOM_WEIGHT = 2.0
#: VerSe label numbers of the phantom's bodies (T11-S1); its sacral segments below S1 are not bodies.
PHANTOM_VERSE = {"T11": 18, "T12": 19, "L1": 20, "L2": 21, "L3": 22, "L4": 23, "L5": 24, "S1": 26}


def phantom_cases(sequences: tuple[str, ...] = PHANTOM_SEQUENCES) -> list[Case]:
    """The demo phantom (``planner.demo``) as labelled training scans: its T1, T2 and STIR synthesised on a 1 mm
    grid (axis 0 head to feet, as the data set's), with the exact body of every vertebra T11-S1 as the label
    and the sacrum below S1, the discs and everything else as background. The phantom is the application's own
    demo case: flat, texture-poor images with Modic bands as dark as a disc, which the real scans do not
    teach. Every pixel is labelled (nothing is ignored): the phantom has no body above T11."""
    from planner.demo.geometry import GridTarget
    from planner.demo.phantom import Phantom
    from planner.demo.writer import GridContext, synthesize_mr

    ph = Phantom()
    x0 = float(ph.curve.x0)
    # (i, j, k) = (left, posterior, caudal) at 1 mm; arrays are (k, j, i)
    shape_kji = (300, 300, 81)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = np.diag([1.0, 1.0, -1.0])
    ijk_to_lps[:3, 3] = (x0 - 40.0, -170.0, 162.0)
    ctx = GridContext.build(ph, ijk_to_lps, shape_kji, sub_slices=1)
    grid = GridTarget(ijk_to_lps, shape_kji)
    lab = np.zeros(shape_kji, np.int16)
    for vt in ph.vertebrae:
        box = grid.box(vt.body_corners())
        if box is None:
            continue
        inside = vt.body_sdf_local(vt.frame.to_local(grid.points(box))) < 0
        lab[box][inside] = PHANTOM_VERSE[vt.name]
    # the array index (k, j, i) -> LPS
    index_to_lps = np.eye(4)
    index_to_lps[:3, 0], index_to_lps[:3, 1], index_to_lps[:3, 2] = (ijk_to_lps[:3, 2], ijk_to_lps[:3, 1],
                                                                      ijk_to_lps[:3, 0])
    index_to_lps[:3, 3] = ijk_to_lps[:3, 3]
    target = np.zeros(lab.shape, np.uint8)
    target[lab > 0] = 1
    target[lab == L5_LABEL] = 2
    target[lab == S1_LABEL] = 3
    vox = np.argwhere(lab > 0)
    rng = np.random.default_rng(0)
    vox = vox[rng.choice(len(vox), size=min(len(vox), 20000), replace=False)]
    body_lps = vox @ index_to_lps[:3, :3].T + index_to_lps[:3, 3]
    xs = body_lps[:, 0]
    out = []
    for seq in sequences:
        image = synthesize_mr(ctx, seq, seed=1000 + PHANTOM_SEQUENCES.index(seq)).astype(np.float32)
        out.append(Case(f"DEMO_{seq}", "DEMO", image, target, np.linalg.inv(index_to_lps), index_to_lps, body_lps,
                        (float(xs.min()), float(xs.max())), weight=PHANTOM_WEIGHT / len(sequences)))
    return out


def folds_of(cases: list[Case]) -> dict[str, int]:
    """Patient groups dealt to the folds in turn, per data set (VB1, VB2, VB3) so each fold has some of each."""
    groups = sorted({c.group for c in cases})
    return {g: i % N_FOLDS for i, g in enumerate(groups)}


# ----------------------------------------------------------------------------------------------- sampling
def _tone_curve(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random smooth intensity curve (monotone or not) through 5 control points."""
    knots = np.linspace(0.0, 1.5, 6)
    vals = np.sort(rng.uniform(0, 1.5, 6)) if rng.random() < 0.5 else rng.uniform(0, 1.5, 6)
    vals[0] = min(vals[0], 0.2)
    return np.interp(x, knots, vals).astype(np.float32)


def _endplate_zones(img: np.ndarray, tgt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ``zones`` member's Modic-like changes: 1-3 soft elliptic zones inside bodies against an endplate
    with the marrow signal scaled by 0.25-0.7 or 1.4-2.2 (grade A-C heights: 4-14 mm; 30-100 % of the
    endplate's depth)."""
    from scipy import ndimage

    body = is_body(tgt)
    step = GRID_MM
    edge = body & ~(np.roll(body, 2, 0) & np.roll(body, -2, 0))
    rr, cc = np.nonzero(edge)
    if len(rr) == 0:
        return img
    out = img.copy()
    rows, cols = img.shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(len(rr)))
        h = rng.uniform(4.0, 14.0) / step
        w = rng.uniform(6.0, 22.0) / step
        zone = ((yy - rr[i]) / h) ** 2 + ((xx - cc[i]) / w) ** 2 <= 1.0
        soft = ndimage.gaussian_filter((zone & body).astype(np.float32), 0.8)
        f = rng.uniform(0.25, 0.7) if rng.random() < 0.5 else rng.uniform(1.4, 2.2)
        out = out * (1.0 + (f - 1.0) * soft)
    return out.astype(np.float32)


def _smooth_profile(n: int, rng: np.random.Generator, amount: float) -> np.ndarray:
    """A smooth random profile of ``n`` values around 1 (relative change up to about ``amount``)."""
    from scipy import ndimage

    if n < 2:
        return np.ones(max(n, 1))
    noise = ndimage.gaussian_filter1d(rng.normal(0.0, 1.0, n + 8), max(1.0, n / 6.0))[4:-4]
    noise /= max(float(np.abs(noise).max()), 1e-6)
    return 1.0 + amount * noise


@dataclass
class _BodySection:
    """One body's section in a training plane: its pixels and their coordinates along the body's axis (a,
    toward the top of the image) and across it (b), with the endplates' a per b."""

    rows: np.ndarray
    cols: np.ndarray
    a: np.ndarray
    b_bin: np.ndarray
    top: np.ndarray  # per b bin: a of the upper endplate
    bottom: np.ndarray  # ... of the lower endplate
    b_lo: int
    height: float
    centre_a: float
    axis: np.ndarray
    centre: np.ndarray


def _body_sections(tgt: np.ndarray) -> list[_BodySection]:
    """The labelled bodies of a training plane (connected parts of the body classes), each with its axis:
    of its two principal axes, the one nearer the image's vertical (the spine runs down the plane)."""
    from scipy import ndimage

    body = is_body(tgt)
    lab, n = ndimage.label(body)
    out = []
    for k in range(1, n + 1):
        r, c = np.nonzero(lab == k)
        if len(r) < 40:
            continue
        pts = np.stack([r, c], 1).astype(float)
        centre = pts.mean(0)
        _, _, vt = np.linalg.svd(pts - centre, full_matrices=False)
        axis = max(vt, key=lambda v: abs(float(v[0])))
        if axis[0] > 0:  # toward the top of the image (rows decrease)
            axis = -axis
        perp = np.array([axis[1], -axis[0]])
        a = (pts - centre) @ axis
        b = (pts - centre) @ perp
        b_bin = np.round(b).astype(int)
        b_lo = int(b_bin.min())
        nb = int(b_bin.max()) - b_lo + 1
        top = np.full(nb, -np.inf)
        bottom = np.full(nb, np.inf)
        np.maximum.at(top, b_bin - b_lo, a)
        np.minimum.at(bottom, b_bin - b_lo, a)
        ok = np.isfinite(top)
        if ok.sum() < 5:
            continue
        mid = slice(nb // 4, max(nb // 4 + 1, 3 * nb // 4))
        height = float(np.median((top - bottom)[mid][np.isfinite(top[mid])]))
        if height < 4:
            continue
        out.append(_BodySection(r, c, a, b_bin - b_lo, top, bottom, b_lo, height, float(centre @ axis), axis, centre))
    return out


def _endplate_band(sec: _BodySection, upper: bool, rng: np.random.Generator) -> np.ndarray:
    """Weights (0..1) of a band of the body along one endplate: 10-60 % of the body's height (varying along
    the endplate: flat, dome-shaped or irregular), over 30-100 % of the endplate's length, starting at or
    just inside the cortical endplate line."""
    nb = len(sec.top)
    cover = rng.uniform(0.3, 1.0)
    span = max(2, int(round(cover * nb)))
    start = int(rng.integers(0, nb - span + 1))
    bins = np.arange(nb)
    h = rng.uniform(0.1, 0.6) * sec.height
    shape = rng.random()
    x = (bins - (start + span / 2)) / max(span / 2, 1.0)
    if shape < 0.35:
        prof = np.ones(nb)
    elif shape < 0.7:
        prof = 1.0 - rng.uniform(0.3, 0.8) * np.clip(x, -1, 1) ** 2
    else:
        prof = _smooth_profile(nb, rng, 0.4)
    hb = np.clip(h * prof, 0.15 * h, 1.2 * h)
    inside_span = (sec.b_bin >= start) & (sec.b_bin < start + span)
    depth = (sec.top[sec.b_bin] - sec.a) if upper else (sec.a - sec.bottom[sec.b_bin])
    skip = rng.uniform(0.0, 1.2)  # the cortical endplate line itself usually keeps its signal
    return (inside_span & (depth >= skip) & (depth <= hb[sec.b_bin])).astype(np.float32)


def _modic_bands(img: np.ndarray, tgt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ``bands`` member's Modic-like marrow changes along endplates (the patients to be planned have them, the training scans
    do not): bands inside the labelled bodies along one or both endplates of 1-3 discs (kissing changes are
    usual), 10-60 % of the body's height, over part or all of the endplate, with the marrow signal made
    darker (type 1 on T1, type 2 on STIR and fat-suppressed images) or brighter (type 1 on T2 and STIR, up to
    fluid; type 2 on T1 and T2, up to fat): a level between the marrow's and the plane's darkest or brightest
    tissue, uneven inside the band, with soft or sharp edges. The target is unchanged: the band stays body."""
    from scipy import ndimage

    secs = _body_sections(tgt)
    if not secs:
        return img
    # neighbouring bodies along the spine: the discs between them
    order = sorted(range(len(secs)), key=lambda i: secs[i].centre[0])
    discs = [(order[i], order[i + 1]) for i in range(len(order) - 1)
             if np.linalg.norm(secs[order[i]].centre - secs[order[i + 1]].centre) < 3.0 * max(
                 secs[order[i]].height, secs[order[i + 1]].height)]
    # endplates to change: (section, upper endplate?) per disc, or single endplates
    targets: list[list[tuple[int, bool]]] = []
    for lo_i, hi_i in (discs if discs else []):  # lo_i: the upper body (smaller row), its lower endplate
        pair = [(lo_i, False), (hi_i, True)]
        if rng.random() < 0.35:
            pair = [pair[int(rng.integers(2))]]
        targets.append(pair)
    for i in range(len(secs)):
        if rng.random() < 0.15:
            targets.append([(i, bool(rng.random() < 0.5))])
    if not targets:
        targets = [[(int(rng.integers(len(secs))), bool(rng.random() < 0.5))]]
    rng.shuffle(targets)
    targets = targets[:int(rng.integers(1, 4))]
    body = is_body(tgt)
    seen = img[img > 0]
    if not body.any() or seen.size < 100:
        return img
    marrow = float(np.median(img[body]))
    dark, bright = (float(v) for v in np.percentile(seen, (2.0, 98.0)))
    out = img.astype(np.float32).copy()
    for group in targets:
        darker = rng.random() < 0.5
        for sec_i, upper in group:
            sec = secs[sec_i]
            w = np.zeros(img.shape, np.float32)
            w[sec.rows, sec.cols] = _endplate_band(sec, upper, rng)
            if not w.any():
                continue
            w = ndimage.gaussian_filter(w, rng.uniform(0.3, 1.5)) * body
            # the band's level lies between the marrow's and the darkest (cortex, air) or the brightest tissue
            # of the plane (fat, fluid): T1-dark, T2/STIR-bright, T1-bright and STIR-dark changes alike
            t = rng.uniform(0.25, 0.85) if darker else rng.uniform(0.2, 1.0)
            level = marrow + t * ((dark if darker else bright) - marrow)
            uneven = 1.0 + rng.uniform(0.0, 0.15) * 3.0 * ndimage.gaussian_filter(
                rng.normal(0.0, 1.0, img.shape).astype(np.float32), rng.uniform(1.0, 3.0))
            # the marrow's own texture partly shows through
            keep = rng.uniform(0.0, 0.5)
            changed = level * uneven + keep * (out - marrow)
            out = out * (1.0 - w) + changed * w
    return out.astype(np.float32)


def _disc_signal(img: np.ndarray, tgt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Degenerated or bright discs: the signal between two neighbouring bodies (the disc, unlabelled) scaled by
    0.3-1.6, so that a dark disc next to a dark Modic band, or a bright one next to a bright band, is seen in
    training."""
    from scipy import ndimage

    secs = _body_sections(tgt)
    if len(secs) < 2:
        return img
    order = sorted(range(len(secs)), key=lambda i: secs[i].centre[0])
    body = is_body(tgt)
    out = img.copy()
    for i in range(len(order) - 1):
        if rng.random() < 0.5:
            continue
        up, lo = secs[order[i]], secs[order[i + 1]]
        # the disc: the hull of the two facing endplates' pixels, minus the bodies
        mask = np.zeros(img.shape, bool)
        for sec, which in ((up, True), (lo, False)):
            d = (sec.a - sec.bottom[sec.b_bin]) if which else (sec.top[sec.b_bin] - sec.a)
            sel = d <= 2.0
            mask[sec.rows[sel], sec.cols[sel]] = True
        if mask.sum() < 10:
            continue
        r, c = np.nonzero(mask)
        from scipy.spatial import Delaunay, QhullError

        try:
            hull = Delaunay(np.stack([r, c], 1).astype(float))
        except QhullError:  # the facing endplates' pixels on one line: no disc area to change
            continue
        r0, r1, c0, c1 = r.min(), r.max() + 1, c.min(), c.max() + 1
        rr, cc = np.mgrid[r0:r1, c0:c1]
        inside = hull.find_simplex(np.stack([rr.ravel(), cc.ravel()], 1).astype(float)) >= 0
        disc = np.zeros(img.shape, bool)
        disc[rr.ravel()[inside], cc.ravel()[inside]] = True
        disc &= ~body
        w = ndimage.gaussian_filter(disc.astype(np.float32), 0.7)
        f = rng.uniform(0.3, 1.6)
        out = out * (1.0 - w) + out * f * w
    return out.astype(np.float32)


def make_sample(case: Case, rng: np.random.Generator, member: str) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (image, target) training pair of PATCH size, with the Modic-like changes of ``member``."""
    from scipy import ndimage

    rows, cols = PATCH
    x_lo, x_hi = case.x_range
    x = rng.uniform(x_lo - 4, x_hi + 4)
    anchor = case.body_lps[rng.integers(len(case.body_lps))]
    cz = anchor[2] + rng.uniform(-40, 40)
    cy = anchor[1] + rng.uniform(-25, 25)
    scale = math.exp(rng.uniform(math.log(0.85), math.log(1.2)))
    theta = math.radians(rng.uniform(-15, 15))
    step = GRID_MM * scale
    r = (np.arange(rows) - (rows - 1) / 2) * step
    c = (np.arange(cols) - (cols - 1) / 2) * step
    # rows go down (-z), cols go back (+y), rotated by theta in the sagittal plane
    dz = -r[:, None] * math.cos(theta) + c[None, :] * math.sin(theta)
    dy = r[:, None] * math.sin(theta) + c[None, :] * math.cos(theta)
    pts = np.empty((rows, cols, 3))
    pts[..., 0] = x
    pts[..., 1] = cy + dy
    pts[..., 2] = cz + dz
    slab = 1.0 if rng.random() < 0.4 else rng.uniform(2.0, 6.0)
    img = np.zeros((rows, cols), np.float32)
    offs = slab_offsets(slab)
    for dx in offs:
        img += sample_plane(case.image, case.lps_to_index, pts + np.array([dx, 0, 0]), order=1)
    img /= len(offs)
    valid = inside_volume(case.image.shape, case.lps_to_index, pts)
    tgt = sample_plane(case.target, case.lps_to_index, pts, order=0, fill=0).astype(np.uint8)
    # marrow changes next to the endplates (Modic changes: darker or brighter than the marrow on every
    # sequence) stay body: the patients to be planned have them, the training scans do not
    if member == "zones":
        if rng.random() < 0.6:
            img = _endplate_zones(img, tgt, rng)
    elif member == "bands":
        if rng.random() < 0.25:
            img = _disc_signal(img, tgt, rng)
        if rng.random() < 0.7:
            img = _modic_bands(img, tgt, rng)
    elif member == "mixed":
        u = rng.random()
        if u < 0.3:
            img = _endplate_zones(img, tgt, rng)
        elif u < 0.85:
            if rng.random() < 0.25:
                img = _disc_signal(img, tgt, rng)
            img = _modic_bands(img, tgt, rng)
    else:
        raise ValueError(f"unknown member {member!r} (one of {', '.join(MEMBERS + EXTRA_MEMBERS)})")
    # intensities: percentiles, then curves, bias field, blur and noise
    img = normalise_plane(img, valid, (rng.uniform(0.2, 5.0), rng.uniform(98.0, 99.9)))
    u = rng.random()
    if u < 0.15:
        img = np.where(valid, 1.2 - np.minimum(img, 1.2), 0).astype(np.float32)
    elif u < 0.45:
        img = _tone_curve(img, rng)
    img = np.power(np.clip(img, 0, None), rng.uniform(0.6, 1.6)).astype(np.float32)
    if rng.random() < 0.5:
        yy, xx = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
        co = rng.normal(0, 0.15, 5)
        img *= np.exp(co[0] * yy + co[1] * xx + co[2] * yy * xx + co[3] * yy ** 2 + co[4] * xx ** 2).astype(
            np.float32)
    if rng.random() < 0.25:
        img = ndimage.gaussian_filter(img, rng.uniform(0.3, 1.0))
    img = img * rng.uniform(0.8, 1.2) + rng.normal(0, rng.uniform(0, 0.05), img.shape).astype(np.float32)
    img[~valid] = 0.0
    return np.clip(img, 0, 2).astype(np.float32), tgt


# ----------------------------------------------------------------------------------------------- model
def build_model():
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    widths = [min(WIDTH * 2 ** i, CAP) for i in range(5)]

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.ModuleList([block(1, widths[0])] + [block(widths[i - 1], widths[i]) for i in range(1, 5)])
            self.up = nn.ModuleList([block(widths[i + 1] + widths[i], widths[i]) for i in range(4)])
            self.head = nn.Conv2d(widths[0], len(CLASSES), 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for i, d in enumerate(self.down):
                x = d(x if i == 0 else nn.functional.max_pool2d(x, 2))
                skips.append(x)
            x = skips.pop()
            for i in range(3, -1, -1):
                x = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
                x = self.up[i](torch.cat([x, skips.pop()], 1))
            return self.head(x)

    return UNet()


class Softmaxed:
    """Wraps the trained network so that the exported model returns class probabilities."""

    @staticmethod
    def wrap(model):
        import torch
        from torch import nn

        class M(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.softmax(self.net(x), dim=1)

        return M()


def _partial_terms(probs, y) -> list:
    """Per partial label present in the batch: minus the log of the summed probabilities of the classes it
    allows, summed over its pixels and divided by the number of pixels the loss sees (each such pixel weighs
    as much as a fully labelled background pixel)."""
    import torch

    n_known = (y != IGNORE).sum()
    terms = []
    for code, allowed in PARTIAL_CLASSES.items():
        sel = y == code
        if sel.any():
            allowed_p = probs[:, list(allowed)].sum(1)[sel]
            terms.append((-torch.log(allowed_p.clamp_min(1e-6))).sum() / n_known.clamp_min(1))
    return terms


def train(cases: list[Case], iters: int, seed: int, log_prefix: str, member: str, batch: int = 8,
          partial: bool = False):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model()
    # the few scans with a labelled S1 are drawn twice as often (the S1 class is learned from them alone)
    case_p = np.array([c.weight * (2.0 if np.any(c.target == 3) else 1.0) for c in cases])
    case_p /= case_p.sum()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=iters, pct_start=0.1)
    weights = torch.tensor([1.0, 1.0, 2.0, 2.0])
    ce = nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)
    t0 = time.time()
    run = 0.0
    model.train()
    for it in range(iters):
        pairs = [make_sample(cases[rng.choice(len(cases), p=case_p)], rng, member) for _ in range(batch)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        logits = model(x)
        full = y <= 3
        loss = ce(logits, torch.where(full, y, torch.full_like(y, IGNORE)))
        known = full.float()
        body_t = ((y >= 1) & full).float()
        # one softmax shared by every term with --partial (as the measured --partial models were trained); without
        # it, the two softmaxes of the shipped networks' training, which reproduce them byte for byte (one shared
        # softmax changes the rounding of the gradients)
        if partial:
            probs = torch.softmax(logits, 1)
            for term in _partial_terms(probs, y):
                loss = loss + term
            prob_body = probs[:, 1:].sum(1) * known
        else:
            prob_body = torch.softmax(logits, 1)[:, 1:].sum(1) * known
        # soft Dice of the union of the body classes (on the fully labelled pixels)
        dice = 1 - (2 * (prob_body * body_t).sum() + 1) / (prob_body.sum() + body_t.sum() + 1)
        # and of the L5 and S1 classes, which name the levels
        if not partial:
            probs = torch.softmax(logits, 1)
        for cls in (2, 3):
            pc, tc = probs[:, cls] * known, (y == cls).float()
            dice = dice + 0.5 * (1 - (2 * (pc * tc).sum() + 1) / (pc.sum() + tc.sum() + 1))
        total = loss + dice
        opt.zero_grad()
        total.backward()
        opt.step()
        sched.step()
        run = 0.98 * run + 0.02 * float(total.detach()) if it else float(total.detach())
        if (it + 1) % 50 == 0 or it == iters - 1:
            print(f"{log_prefix} iter {it + 1}/{iters} loss {run:.3f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    return model


def export_onnx(model, path: Path) -> None:
    import torch

    wrapped = Softmaxed.wrap(model).eval()
    dummy = torch.zeros(1, 1, 160, 128)
    torch.onnx.export(wrapped, (dummy,), str(path), input_names=["plane"], output_names=["probabilities"],
                      dynamic_axes={"plane": {0: "n", 2: "rows", 3: "cols"},
                                    "probabilities": {0: "n", 2: "rows", 3: "cols"}},
                      opset_version=17, dynamo=False)


def write_union(paths: list[Path], out: Path) -> None:
    """One ONNX model of the members' networks: the same input plane; background the smaller of their
    backgrounds, the body classes sharing the rest in the proportions of their mean."""
    import onnx
    from onnx import TensorProto, compose, helper

    nodes, inits = [], []
    bgs, classes = [], []
    for i, path in enumerate(paths):
        m = compose.add_prefix(onnx.load(str(path)), prefix=f"m{i}_")
        nodes.append(helper.make_node("Identity", ["plane"], [f"m{i}_plane"]))
        nodes.extend(m.graph.node)
        inits.extend(m.graph.initializer)
        inits.append(helper.make_tensor(f"split{i}", TensorProto.INT64, [2], [1, len(CLASSES) - 1]))
        nodes.append(helper.make_node("Split", [f"m{i}_probabilities", f"split{i}"], [f"bg{i}", f"cls{i}"], axis=1))
        bgs.append(f"bg{i}")
        classes.append(f"cls{i}")
    inits += [helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
              helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-6]),
              helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
    nodes += [helper.make_node("Min", bgs, ["bg"]),
              helper.make_node("Sum", classes, ["cls_sum"]),
              helper.make_node("ReduceSum", ["cls_sum", "axis1"], ["cls_total"], keepdims=1),
              helper.make_node("Add", ["cls_total", "eps"], ["cls_total_eps"]),
              helper.make_node("Div", ["cls_sum", "cls_total_eps"], ["cls_share"]),
              helper.make_node("Sub", ["one", "bg"], ["body"]),
              helper.make_node("Mul", ["cls_share", "body"], ["cls"]),
              helper.make_node("Concat", ["bg", "cls"], ["probabilities"], axis=1)]
    first = onnx.load(str(paths[0]))
    graph = helper.make_graph(nodes, "mri_bodies_union", list(first.graph.input), list(first.graph.output), inits)
    model = helper.make_model(graph, opset_imports=first.opset_import, ir_version=first.ir_version)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


# ----------------------------------------------------------------------------------------------- held-out numbers
def predict_plane(model, case: Case, x: float):
    """Class probabilities (4, rows, cols) on the whole sagittal plane of a scan at LPS x, and its target."""
    import torch

    from planner.levels.mri_input import plane_for_box

    corners = np.array([[i, j, k] for i in (0, case.image.shape[0] - 1) for j in (0, case.image.shape[1] - 1)
                        for k in (0, case.image.shape[2] - 1)], float)
    lps = corners @ case.index_to_lps[:3, :3].T + case.index_to_lps[:3, 3]
    g = plane_for_box(x, lps[:, 1].min(), lps[:, 1].max(), lps[:, 2].min(), lps[:, 2].max())
    pts = g.points_lps()
    img = sample_plane(case.image, case.lps_to_index, pts)
    valid = inside_volume(case.image.shape, case.lps_to_index, pts)
    tgt = sample_plane(case.target, case.lps_to_index, pts, order=0).astype(np.uint8)
    with torch.no_grad():
        prob = torch.softmax(model(torch.from_numpy(normalise_plane(img, valid))[None, None]), 1)[0].numpy()
    return prob, tgt


def heldout_numbers(model, cases: list[Case]) -> list[dict]:
    """Per held-out scan: Dice of the body classes and of L5 on the mid-sagittal plane of the labels."""
    out = []
    for case in cases:
        x = float(np.median(case.body_lps[:, 0]))
        prob, tgt = predict_plane(model, case, x)
        known = tgt <= 3
        pred = prob.argmax(0)
        row = {"case": case.name}
        for name, sel_p, sel_t in (("body", pred >= 1, tgt >= 1), ("L5", pred == 2, tgt == 2)):
            a, b = sel_p & known, sel_t & known
            row[f"dice_{name}"] = float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder of the lumbar_mri_vb scans")
    ap.add_argument("--out", type=Path, required=True, help="output folder (fold models, folds.json, final model)")
    ap.add_argument("--iters", type=int, default=1500, help="training iterations of 8 planes (default 1500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--partial", action="store_true",
                    help="train on the partial labels too (ABOVE_TOP, BELOW_L5): not L5 or S1 above the highest "
                         "labelled body, nothing lumbar below a lowest labelled L5")
    ap.add_argument("--demo-phantom", action="store_true",
                    help="add the demo phantom's T1, T2 and STIR to every training set (never held out; "
                         "PHANTOM_WEIGHT scans' share of the samples)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared machine more threads wait on each other)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--only-fold", type=int, choices=range(N_FOLDS), help="train only this cross-validation fold")
    which.add_argument("--only-final", action="store_true", help="train only the model on all scans")
    ap.add_argument("--no-final", action="store_true", help="skip the model on all scans")
    ap.add_argument("--member", choices=MEMBERS + EXTRA_MEMBERS,
                    help="train only this member (default: both, then their union)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    cases = load_cases(args.data, args.partial)
    fold_of_group = folds_of(cases)
    fold = {c.name: fold_of_group[c.group] for c in cases}
    # the phantom's sequences train every model and are held out by none (fold -1)
    synthetic = phantom_cases() if args.demo_phantom else []
    fold.update({c.name: -1 for c in synthetic})
    (args.out / "folds.json").write_text(json.dumps(
        {"folds": [[c.name for c in cases if fold[c.name] == k] for k in range(N_FOLDS)],
         "always_trained": [c.name for c in synthetic],
         "iters": args.iters, "seed": args.seed, "partial": args.partial}, indent=1))
    cases = cases + synthetic
    members = [args.member] if args.member else list(MEMBERS)
    for member in members:
        (args.out / member).mkdir(exist_ok=True)

    def union(name: str) -> None:
        paths = [args.out / member / name for member in MEMBERS]
        if all(p.is_file() for p in paths):
            write_union(paths, args.out / name)
            print(f"union of {', '.join(MEMBERS)}: {args.out / name}", flush=True)

    # the shipped model first (the folds only measure it)
    if args.only_final or (args.only_fold is None and not args.no_final):
        for member in members:
            model = train(cases, args.iters, args.seed + 100, f"all scans, {member}", member, partial=args.partial)
            export_onnx(model, args.out / member / "mri_bodies.onnx")
        union("mri_bodies.onnx")
        print(f"shipped model: {args.out / 'mri_bodies.onnx'} (copy to resources/models/)")
    todo = [] if args.only_final else ([args.only_fold] if args.only_fold is not None else list(range(N_FOLDS)))
    rows = []
    for k in todo:
        train_cases = [c for c in cases if fold[c.name] != k]
        test_cases = [c for c in cases if fold[c.name] == k]
        for member in members:
            model = train(train_cases, args.iters, args.seed + k, f"fold {k}, {member}", member,
                          partial=args.partial)
            export_onnx(model, args.out / member / f"fold{k}.onnx")
            for r in heldout_numbers(model, test_cases):
                r["fold"], r["member"] = k, member
                rows.append(r)
                print(f"held-out fold {k} {member} {r['case']}: Dice bodies {r['dice_body']:.3f}, "
                      f"L5 {r['dice_L5']:.3f}", flush=True)
        union(f"fold{k}.onnx")
    if rows:
        (args.out / f"heldout_seg{'' if args.only_fold is None else args.only_fold}.json").write_text(
            json.dumps(rows, indent=1))
        for member in members:
            for k in todo:
                sel = [r for r in rows if r["fold"] == k and r["member"] == member]
                print(f"fold {k}, {member}: median Dice bodies {np.median([r['dice_body'] for r in sel]):.3f}, "
                      f"L5 {np.median([r['dice_L5'] for r in sel]):.3f} ({len(sel)} held-out scans)")
        print(f"landmark numbers of the union: bench/anatomy_bench.py --mri-cv {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
