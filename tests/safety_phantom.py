"""An analytic CT vertebra for the image safety checks: a box body, a cylinder canal, cylinder pedicles,
a lamina closing the ring, a plate of ilium to the left, in soft tissue inside a skin ellipse.

Usual patient orientation, LPS mm, body centre at the origin: anterior is -y, superior +z, the
patient's left +x. Every size is a module constant so that the tests derive expected values by hand.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from planner.imaging.volume import ImageInfo, Volume, make_ijk_to_lps
from planner.plan import Landmarks, Level, Plan

#: Body: a box (mm).
BODY_X, BODY_Y, BODY_Z = 20.0, 17.5, 12.5
#: Cortex thickness (mm) and densities (HU).
CORTEX_MM = 1.5
CORTEX_HU, CANCELLOUS_HU, SOFT_HU, CSF_HU, AIR_HU = 700.0, 150.0, 40.0, 10.0, -1000.0
#: Canal: a cylinder along z.
CANAL_Y, CANAL_R = 27.0, 7.0
#: Pedicles: cylinders along y from the posterior wall backward, centred at x = +-PED_X, z = PED_Z.
PED_X, PED_Z, PED_R, PED_Y_END = 15.0, 3.0, 5.0, 40.0
#: Lamina: half annulus behind the canal, radii (mm) and height range (mm).
LAMINA_R = (CANAL_R + 1.0, CANAL_R + 4.5)
LAMINA_Z = (-10.0, 12.0)
#: The ilium: a plate on the patient's left.
ILIUM_X = (72.0, 82.0)
ILIUM_Y = (10.0, 90.0)
ILIUM_Z = (-35.0, 35.0)
#: Skin ellipse (semi-axes in x and y, centre y).
SKIN = (140.0, 110.0, 20.0)
SPACING = 1.0


def _box_shell(x, y, z, hx, hy, hz, t):
    inside = (np.abs(x) <= hx) & (np.abs(y) <= hy) & (np.abs(z) <= hz)
    core = (np.abs(x) <= hx - t) & (np.abs(y) <= hy - t) & (np.abs(z) <= hz - t)
    return inside, core


def phantom_arrays(spacing: float = SPACING):
    """(HU array in (k, j, i) order, ijk_to_lps, truth masks dict)."""
    lo = np.array([-100.0, -60.0, -45.0])
    hi = np.array([100.0, 140.0, 45.0])
    n = np.round((hi - lo) / spacing).astype(int) + 1
    m = make_ijk_to_lps(lo, np.eye(3), (spacing, spacing, spacing))
    z, y, x = np.meshgrid(lo[2] + spacing * np.arange(n[2]), lo[1] + spacing * np.arange(n[1]),
                          lo[0] + spacing * np.arange(n[0]), indexing="ij")
    skin = ((x / SKIN[0]) ** 2 + ((y - SKIN[2]) / SKIN[1]) ** 2) <= 1.0
    hu = np.where(skin, SOFT_HU, AIR_HU).astype(np.float32)
    body, body_core = _box_shell(x, y, z, BODY_X, BODY_Y, BODY_Z, CORTEX_MM)
    canal = ((x ** 2 + (y - CANAL_Y) ** 2) <= CANAL_R ** 2)
    ped = np.zeros_like(body)
    ped_core = np.zeros_like(body)
    for sx in (1.0, -1.0):
        rr = (x - sx * PED_X) ** 2 + (z - PED_Z) ** 2
        along = (y >= BODY_Y - 2.0) & (y <= PED_Y_END)
        ped |= along & (rr <= PED_R ** 2)
        ped_core |= along & (rr <= (PED_R - CORTEX_MM) ** 2)
    rc = np.sqrt(x ** 2 + (y - CANAL_Y) ** 2)
    lamina = (rc >= LAMINA_R[0]) & (rc <= LAMINA_R[1]) & (y >= CANAL_Y) & (z >= LAMINA_Z[0]) & (z <= LAMINA_Z[1])
    # the lamina joins the pedicles' posterior ends
    bridge = (np.abs(x) >= CANAL_R) & (np.abs(x) <= PED_X + PED_R) & (y >= PED_Y_END - 6.0) & (y <= PED_Y_END) & \
        (z >= LAMINA_Z[0]) & (z <= LAMINA_Z[1])
    il, il_core = _box_shell(x - sum(ILIUM_X) / 2, y - sum(ILIUM_Y) / 2, z, (ILIUM_X[1] - ILIUM_X[0]) / 2,
                             (ILIUM_Y[1] - ILIUM_Y[0]) / 2, (ILIUM_Z[1] - ILIUM_Z[0]) / 2, CORTEX_MM)
    posterior = (ped | lamina | bridge) & ~canal
    hu[posterior] = CORTEX_HU
    hu[ped_core & ~canal] = CANCELLOUS_HU
    hu[body] = CORTEX_HU
    hu[body_core] = CANCELLOUS_HU
    hu[il] = CORTEX_HU
    hu[il_core] = CANCELLOUS_HU
    hu[canal & ~body] = CSF_HU
    hu = ndimage.gaussian_filter(hu, 0.6 / spacing)  # scanner blur
    hu += np.random.default_rng(1).normal(0.0, 15.0, hu.shape).astype(np.float32)
    # the space the ring encloses (the canal with its epidural space and recesses), where the ring is closed
    ring = (y >= BODY_Y) & (np.abs(x) <= PED_X - PED_R) & ((y <= CANAL_Y) | (rc <= LAMINA_R[0])) & \
        (z >= PED_Z - PED_R) & (z <= PED_Z + PED_R)
    truth = {"body": body, "canal": canal & ~body, "vertebra": body | posterior, "ilium": il,
             "ring_interior": ring & ~(body | posterior)}
    return hu, m, truth


def phantom_volume(spacing: float = SPACING) -> tuple[Volume, dict]:
    hu, m, truth = phantom_arrays(spacing)
    return Volume(hu, m, ImageInfo(modality="CT", series_instance_uid="1.2.3.4.5")), truth


def phantom_plan() -> Plan:
    """One level (L5) whose landmarks are the phantom's true ones."""
    lm = Landmarks(body_center_lps=(0.0, 0.0, 0.0), superior_endplate_lps=(0.0, 0.0, BODY_Z),
                   inferior_endplate_lps=(0.0, 0.0, -BODY_Z), posterior_wall_lps=(0.0, BODY_Y, 0.0),
                   anterior_wall_lps=(0.0, -BODY_Y, 0.0), pedicle_left_lps=(PED_X, BODY_Y + 9.0, PED_Z),
                   pedicle_right_lps=(-PED_X, BODY_Y + 9.0, PED_Z))
    return Plan(levels=[Level(name="L5", treat=True, landmarks=lm)])
