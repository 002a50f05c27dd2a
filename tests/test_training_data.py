"""The MRI body network's training data (scripts/train_mri_bodies.py): the demo phantom's labels are its bodies."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import train_mri_bodies as training  # noqa: E402
from planner.demo.phantom import Phantom  # noqa: E402


def test_the_demo_phantom_trains_with_its_exact_bodies():
    """Each vertebra T11-S1 of the phantom is labelled with its VerSe number, centred on the phantom's own body
    centre; the sacral segments below S1 and the discs are background; the image is the sequence asked for."""
    (case,) = training.phantom_cases(("T1",))
    assert case.name == "DEMO_T1" and case.image.shape == case.target.shape
    assert case.index_to_lps[2, 0] < 0  # axis 0 head to feet, as the real scans' (the ignore planes rely on it)
    ph = Phantom()
    lps_to_index = case.lps_to_index
    # the classes: L5 and S1 their own, every other body "body"
    want_class = {"L5": 2, "S1": 3}
    for vt in ph.vertebrae:
        centre_lps = vt.frame.to_world(vt.landmarks_local()["body_center"])
        k = np.rint(lps_to_index[:3, :3] @ centre_lps + lps_to_index[:3, 3]).astype(int)
        cls = want_class.get(vt.name, 1)
        assert case.target[tuple(k)] == cls, vt.name
        # the centroid of the body's voxels that are nearest this centre lies on it
        sel = np.argwhere(case.target == cls)
        pts = sel @ case.index_to_lps[:3, :3].T + case.index_to_lps[:3, 3]
        near = pts[np.linalg.norm(pts - centre_lps, axis=1) < 0.6 * vt.h]
        assert np.linalg.norm(near.mean(axis=0) - centre_lps) < 1.5, vt.name
    for seg in ph.sacral:
        centre_lps = seg.frame.to_world(seg.landmarks_local()["body_center"])
        k = np.rint(lps_to_index[:3, :3] @ centre_lps + lps_to_index[:3, 3]).astype(int)
        if all(0 <= a < n for a, n in zip(k, case.target.shape)):
            assert case.target[tuple(k)] == 0, seg.name
    # discs: halfway between L4's inferior and L5's superior endplate centres
    l4, l5 = ph.by_name["L4"], ph.by_name["L5"]
    disc_lps = 0.5 * (l4.frame.to_world(l4.landmarks_local()["inferior_endplate"])
                      + l5.frame.to_world(l5.landmarks_local()["superior_endplate"]))
    k = np.rint(lps_to_index[:3, :3] @ disc_lps + lps_to_index[:3, 3]).astype(int)
    assert case.target[tuple(k)] == 0
    # the T1: the marrow of L3 brighter than its disc's nucleus
    l3 = ph.by_name["L3"]
    k3 = np.rint(lps_to_index[:3, :3] @ l3.frame.to_world(l3.landmarks_local()["body_center"])
                 + lps_to_index[:3, 3]).astype(int)
    assert case.image[tuple(k3)] > case.image[tuple(k)]
