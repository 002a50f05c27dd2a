"""An analytic lumbar spine phantom in LPS millimetres, for the built-in demo case.

The phantom is a set of analytic shapes (signed-distance functions) placed along a lordotic spine
curve: vertebrae T11 (partly in view), T12, L1-L5 and S1 with the rest of the sacrum, each with a
kidney- or oval-shaped body, a dark cortical shell and endplates, pedicles, laminae, spinous and
transverse processes and facet joints; intervertebral discs (nucleus and annulus); the spinal canal
with epidural fat, the thecal sac (CSF), the conus and cauda equina and the exiting roots; the
paraspinal muscles, psoas and quadratus lumborum; the aorta, IVC and iliac vessels, the kidneys,
bowel with gas, the iliac wings, subcutaneous fat and skin. Modic type 1 changes sit at the L4
inferior and L5 superior endplates and type 2 changes at the L5 inferior and S1 superior endplates.

Tissue labels are functions of LPS points (:meth:`Phantom.labels_at`), so any grid can be sampled
exactly (:meth:`Phantom.labels_on_grid`). MR signal per tissue and sequence follows
../shared/domain.md 2.1 (:data:`MR_SIGNAL`); a CT-like attenuation in Hounsfield units per tissue
(:data:`HU`) drives the fluoroscopy projections.

Anatomical sizes come from ../shared/domain.md 5.2 (Cook & Baker 2021 for L5: pedicle width 16.1 mm
and height 12.9 mm, body posterior height 26.3 mm, superior AP length 35.7 mm; Zindrick placeholders
from :class:`planner.settings.PlanningSettings` for the other pedicles) and transverse pedicle
angles from ``PlanningSettings.pedicle_transverse_angle_deg`` (domain.md 5.1). Everything else is
an anatomical shape parameter of this synthetic phantom, not a clinical threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

from planner.demo.geometry import (
    F, Frame, GridTarget, PointTarget, Target, aabb_corners, sd_capsule, sd_ellipsoid, sd_extrude, sd_round_box,
    sd_superellipse,
    seg_dist2, smoothstep, superellipse_rho, unit,
)
from planner.settings import PlanningSettings, level_setting

#: Bump whenever the phantom or the files written change (the demo cache is keyed by it).
GENERATOR_VERSION = "3"


class Tissue(IntEnum):
    AIR = 0
    SKIN = 1
    FAT = 2
    MUSCLE = 3
    CORTEX = 4
    MARROW = 5
    MODIC1 = 6
    MODIC2 = 7
    NUCLEUS = 8
    NUCLEUS_MILD = 9
    NUCLEUS_DARK = 10
    ANNULUS = 11
    CSF = 12
    NERVE = 13
    EPIDURAL_FAT = 14
    FACET_JOINT = 15
    LIGAMENT = 16
    BASIVERTEBRAL = 17
    ARTERY = 18
    VEIN = 19
    KIDNEY = 20
    BOWEL = 21
    GAS = 22


N_TISSUES = len(Tissue)
BONE_TISSUES = (Tissue.CORTEX, Tissue.MARROW, Tissue.MODIC1, Tissue.MODIC2)
MARROW_TISSUES = (Tissue.MARROW, Tissue.MODIC1, Tissue.MODIC2)

#: Relative MR signal (0..1) per tissue: (T1, T2, STIR). domain.md 2.1: normal marrow T1 bright,
#: T2 intermediate, STIR dark; Modic 1 T1 low / T2 high / STIR high; Modic 2 T1 high / T2 iso to
#: slightly high / STIR low; cortex dark everywhere; CSF T1 dark, T2 and STIR bright; fat T1 and T2
#: (fast spin echo) bright, STIR dark; muscle intermediate to dark; flowing arterial blood a flow void.
MR_SIGNAL: dict[Tissue, tuple[float, float, float]] = {
    Tissue.AIR: (0.0, 0.0, 0.0),
    Tissue.SKIN: (0.45, 0.35, 0.30),
    Tissue.FAT: (0.95, 0.80, 0.05),
    Tissue.MUSCLE: (0.33, 0.20, 0.17),
    Tissue.CORTEX: (0.04, 0.04, 0.03),
    Tissue.MARROW: (0.66, 0.40, 0.09),
    Tissue.MODIC1: (0.30, 0.74, 0.58),
    Tissue.MODIC2: (0.90, 0.50, 0.04),
    Tissue.NUCLEUS: (0.30, 0.92, 0.72),
    Tissue.NUCLEUS_MILD: (0.29, 0.55, 0.42),
    Tissue.NUCLEUS_DARK: (0.27, 0.24, 0.17),
    Tissue.ANNULUS: (0.22, 0.13, 0.10),
    Tissue.CSF: (0.10, 1.00, 0.90),
    Tissue.NERVE: (0.36, 0.30, 0.24),
    Tissue.EPIDURAL_FAT: (0.90, 0.74, 0.05),
    Tissue.FACET_JOINT: (0.25, 0.58, 0.48),
    Tissue.LIGAMENT: (0.08, 0.08, 0.06),
    Tissue.BASIVERTEBRAL: (0.24, 0.78, 0.66),
    Tissue.ARTERY: (0.05, 0.04, 0.05),
    Tissue.VEIN: (0.16, 0.22, 0.16),
    Tissue.KIDNEY: (0.38, 0.62, 0.60),
    Tissue.BOWEL: (0.38, 0.48, 0.40),
    Tissue.GAS: (0.0, 0.0, 0.0),
}

#: Amplitude of the smooth texture field per tissue (marrow heterogeneity, bowel contents, ...).
TEXTURE: dict[Tissue, float] = {
    Tissue.FAT: 0.03, Tissue.MUSCLE: 0.06, Tissue.MARROW: 0.05, Tissue.MODIC1: 0.06, Tissue.MODIC2: 0.05,
    Tissue.BOWEL: 0.30, Tissue.KIDNEY: 0.08, Tissue.NUCLEUS: 0.04, Tissue.EPIDURAL_FAT: 0.03,
}

#: CT-like attenuation per tissue in Hounsfield units (relative to water), for the fluoroscopy
#: projections. Bone is given as it attenuates at the effective energy of a fluoroscopy beam (about
#: 60 keV), where bone mineral attenuates relatively more than at CT energies.
HU: dict[Tissue, float] = {
    Tissue.AIR: -1000, Tissue.SKIN: 30, Tissue.FAT: -100, Tissue.MUSCLE: 50, Tissue.CORTEX: 1800,
    Tissue.MARROW: 380, Tissue.MODIC1: 330, Tissue.MODIC2: 250, Tissue.NUCLEUS: 90, Tissue.NUCLEUS_MILD: 95,
    Tissue.NUCLEUS_DARK: 100, Tissue.ANNULUS: 110, Tissue.CSF: 10, Tissue.NERVE: 35, Tissue.EPIDURAL_FAT: -90,
    Tissue.FACET_JOINT: 80, Tissue.LIGAMENT: 90, Tissue.BASIVERTEBRAL: 40, Tissue.ARTERY: 45, Tissue.VEIN: 40,
    Tissue.KIDNEY: 35, Tissue.BOWEL: 30, Tissue.GAS: -1000,
}


def lut(values: dict[Tissue, float], default: float = 0.0) -> np.ndarray:
    out = np.full(N_TISSUES, default, dtype=F)
    for t, v in values.items():
        out[int(t)] = v
    return out


# ------------------------------------------------------------------ anatomy tables
@dataclass(frozen=True)
class LevelSpec:
    """Shape parameters of one vertebra (mm)."""

    name: str
    width: float  # body width (left-right) at the endplates
    depth: float  # body AP depth at the endplates
    height: float  # body height at the rim
    pedicle_width: float
    pedicle_height: float
    canal_width: float  # interpedicular distance
    tp_reach: float  # transverse-process tip distance from the midline
    tp_radius: float
    spinous_length: float
    kidney_mm: float  # posterior concavity at the midline (0 for an oval L5)
    squareness: float  # superellipse exponent of the body section
    #: posterior height of the disc below this vertebra (to the next caudal one)
    disc_below_mm: float = 5.0
    #: pedicle centre height above mid-body, as a fraction of the body height
    pedicle_rise: float = 0.12
    #: basivertebral foramen height above mid-body, as a fraction of the body height (domain.md 3:
    #: nearer the upper rim T10-L4, nearer the lower rim at L5)
    bvf_rise: float = 0.12
    spinous_radius: float = 8.0


def level_specs(settings: PlanningSettings) -> list[LevelSpec]:
    """T11 .. S1. Pedicle widths/heights: settings placeholders (Zindrick, domain.md 5.2), L5 from
    Cook & Baker (domain.md 5.2 [C]); body sizes grow caudally to the L5 values of Cook & Baker."""
    pw = lambda n: level_setting(settings.pedicle_width_mm, n)  # noqa: E731
    ph = lambda n: level_setting(settings.pedicle_height_mm, n)  # noqa: E731
    return [
        LevelSpec("T11", 37.0, 28.5, 21.5, pw("T12") * 0.92, ph("T12"), 18.5, 26.0, 4.0, 30.0, 1.5, 2.5, 4.0,
                  spinous_radius=6.5),
        LevelSpec("T12", 40.0, 30.0, 23.5, pw("T12"), ph("T12"), 19.5, 28.0, 4.0, 30.0, 2.0, 2.5, 4.5,
                  spinous_radius=7.0),
        LevelSpec("L1", 42.0, 32.0, 24.5, pw("L1"), ph("L1"), 21.0, 36.0, 4.5, 31.0, 2.0, 2.5, 5.0),
        LevelSpec("L2", 44.0, 33.0, 25.0, pw("L2"), ph("L2"), 22.0, 42.0, 4.5, 32.0, 2.0, 2.5, 5.5),
        LevelSpec("L3", 46.0, 34.0, 25.5, pw("L3"), ph("L3"), 23.0, 48.0, 4.5, 32.0, 2.0, 2.5, 6.0),
        LevelSpec("L4", 48.0, 35.0, 26.0, pw("L4"), ph("L4"), 24.0, 45.0, 5.0, 30.0, 1.5, 2.5, 5.5,
                  pedicle_rise=0.10),
        LevelSpec("L5", 50.0, 35.7, 26.3, 16.1, 12.9, 27.0, 43.0, 7.0, 24.0, 0.0, 2.0, 4.0,
                  pedicle_rise=0.05, bvf_rise=-0.10, spinous_radius=7.0),
        LevelSpec("S1", 50.0, 34.0, 28.0, pw("S1"), ph("S1"), 29.0, 0.0, 0.0, 0.0, 0.0, 2.5, 2.0,
                  pedicle_rise=0.0, bvf_rise=-0.12, spinous_radius=4.5),
    ]


#: The levels the demo plan and ground truth describe (T11 is only there so the image top is full).
LEVELS: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")

#: Disc degeneration: nucleus tissue per disc (upper level name -> tissue).
DISC_NUCLEUS = {"L4": Tissue.NUCLEUS_MILD, "L5": Tissue.NUCLEUS_DARK}
#: Posterior disc bulge per disc (upper level name -> mm), below the 5 mm exclusion of domain.md 1.2.
DISC_BULGE = {"L3": 1.0, "L4": 2.5, "L5": 2.0}
#: Facet joint angle from the sagittal plane per disc (upper level name -> deg).
FACET_ANGLE = {"T11": 12.0, "T12": 15.0, "L1": 25.0, "L2": 30.0, "L3": 40.0, "L4": 45.0, "L5": 50.0}


@dataclass(frozen=True)
class ModicSpec:
    level: str
    endplate: str  # "superior" | "inferior"
    modic_type: str  # "1" | "2"
    max_height_mm: float  # from the endplate surface
    footprint: tuple[float, float] = (0.86, 0.84)  # semi-axes as fractions of the body half width / half depth
    offset_v_mm: float = -1.0  # footprint centre shift along AP (negative = anterior)


MODIC: tuple[ModicSpec, ...] = (
    ModicSpec("L4", "inferior", "1", 9.0),
    ModicSpec("L5", "superior", "1", 8.5),
    ModicSpec("L5", "inferior", "2", 8.0, (0.84, 0.82), -1.5),
    ModicSpec("S1", "superior", "2", 9.0, (0.84, 0.82), -1.5),
)

CORTEX_MM = 1.2
ENDPLATE_CONCAVITY_MM = 1.5
BODY_WAIST = 0.05
PEDICLE_BEHIND_WALL_MM = 6.0
PEDICLE_LEN_ANT = 12.0
PEDICLE_LEN_POST = 9.0
SPINOUS_BASE_MM = 22.0


# ------------------------------------------------------------------ the spine curve
class _Arc:
    """One circular arc of the curve: arc length s maps to tangent angle phi = phi_ref - (s - s_ref) / R."""

    def __init__(self, y_ref: float, z_ref: float, s_ref: float, phi_ref: float, radius: float) -> None:
        self.s_ref, self.phi_ref, self.R = s_ref, phi_ref, radius
        self.cy = y_ref + radius * math.cos(phi_ref)
        self.cz = z_ref + radius * math.sin(phi_ref)

    def phi(self, s):
        return self.phi_ref - (s - self.s_ref) / self.R

    def at(self, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ph = self.phi(s)
        p = np.array([self.cy - self.R * math.cos(ph), self.cz - self.R * math.sin(ph)])
        t = np.array([-math.sin(ph), math.cos(ph)])
        n = np.array([math.cos(ph), math.sin(ph)])
        return p, t, n

    def coords(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dy = y - F(self.cy)
        dz = z - F(self.cz)
        r = np.sqrt(dy * dy + dz * dz)
        ph = np.arctan2(-dz, -dy)
        return F(self.s_ref) + (F(self.phi_ref) - ph) * F(self.R), F(self.R) - r


class Curve:
    """The line of the posterior vertebral walls in the midsagittal plane: two tangent circular arcs
    (a tighter lower lordosis L3-S1 and a flatter upper part), continued by straight lines beyond
    ``[s_lo, s_hi]``. ``s`` is arc length (mm, cranial positive, 0 at the S1 superior endplate), ``u`` =
    x - x0 (left positive), ``v`` the posterior offset from the curve."""

    def __init__(self, x0: float, y0: float, z0: float, phi0_deg: float, r_lower: float, r_upper: float,
                 s_join: float, s_lo: float, s_hi: float) -> None:
        self.x0 = x0
        lower = _Arc(y0, z0, 0.0, math.radians(phi0_deg), r_lower)
        pj, _, _ = lower.at(s_join)
        upper = _Arc(float(pj[0]), float(pj[1]), s_join, float(lower.phi(s_join)), r_upper)
        self.lower, self.upper, self.s_join = lower, upper, s_join
        self.s_lo, self.s_hi = s_lo, s_hi

    def _arc(self, s: float) -> _Arc:
        return self.lower if s < self.s_join else self.upper

    def phi(self, s: float) -> float:
        s = min(max(s, self.s_lo), self.s_hi)
        return float(self._arc(s).phi(s))

    def _at(self, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """3D point, tangent and posterior normal at s (straight beyond the ends)."""
        sc = min(max(s, self.s_lo), self.s_hi)
        p2, t2, n2 = self._arc(sc).at(sc)
        p = np.array([self.x0, p2[0], p2[1]])
        t = np.array([0.0, t2[0], t2[1]])
        n = np.array([0.0, n2[0], n2[1]])
        return p + (s - sc) * t, t, n

    def point(self, s: float) -> np.ndarray:
        return self._at(s)[0]

    def frame(self, s: float) -> Frame:
        """Frame at arc length s: u = left, v = posterior, w = cranial along the curve."""
        p, t, n = self._at(s)
        return Frame(p, np.column_stack([[1.0, 0.0, 0.0], n, t]))

    def world(self, u: float, v: float, s: float) -> np.ndarray:
        fr = self.frame(s)
        return fr.origin + u * fr.rot[:, 0] + v * fr.rot[:, 1]

    def coords(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, s) of LPS points (..., 3)."""
        u = p[..., 0] - F(self.x0)
        y, z = p[..., 1], p[..., 2]
        s_l, v_l = self.lower.coords(y, z)
        s_u, v_u = self.upper.coords(y, z)
        low = s_l < F(self.s_join)
        s = np.where(low, s_l, s_u)
        v = np.where(low, v_l, v_u)
        for edge, sel in ((self.s_lo, s < self.s_lo), (self.s_hi, s > self.s_hi)):
            if np.any(sel):
                pe, te, ne = self._at(edge)
                q1 = y[sel] - F(pe[1])
                q2 = z[sel] - F(pe[2])
                s[sel] = F(edge) + q1 * F(te[1]) + q2 * F(te[2])
                v[sel] = q1 * F(ne[1]) + q2 * F(ne[2])
        return u, v, s

    def corners(self, u_lo: float, u_hi: float, v_lo: float, v_hi: float, s_lo: float, s_hi: float) -> np.ndarray:
        """LPS points bounding the curvilinear box (for culling)."""
        pts = []
        for s in np.linspace(s_lo, s_hi, 9):
            fr = self.frame(float(s))
            for u in (u_lo, u_hi):
                for v in (v_lo, v_hi):
                    pts.append(fr.origin + u * fr.rot[:, 0] + v * fr.rot[:, 1])
        return np.array(pts)


# ------------------------------------------------------------------ vertebra
SdfFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class BonePart:
    corners: np.ndarray
    sdf: SdfFn
    subtract: bool = False


class Vertebra:
    """One vertebra: body, pedicles and posterior elements in its own frame (u left, v posterior,
    w cranial); the frame origin is on the posterior wall line at mid-height."""

    def __init__(self, spec: LevelSpec, frame: Frame, s_center: float, angle_deg: float) -> None:
        self.spec = spec
        self.name = spec.name
        self.frame = frame
        self.s_center = s_center
        self.alpha = math.radians(angle_deg)
        self.a = spec.width / 2
        self.b = spec.depth / 2
        self.h = spec.height
        self.c = ENDPLATE_CONCAVITY_MM if spec.name != "S1" else 1.0
        ca = math.cos(self.alpha)
        self.u_isthmus = spec.canal_width / 2 + spec.pedicle_width / (2 * ca)
        self.v_isthmus = PEDICLE_BEHIND_WALL_MM
        self.w_isthmus = spec.pedicle_rise * self.h
        #: extra bone parts attached later (facet processes), in world coordinates
        self.extra_parts: list[BonePart] = []

    # --- body -------------------------------------------------------------------------------
    def _section(self, u, v, w, waist: bool = True):
        a, b = self.a, self.b
        y = v + F(b)
        notch = F(self.spec.kidney_mm) * np.exp(-(u / F(0.32 * a)) ** 2) * smoothstep(-4.0, 4.0, y - F(0.5 * b))
        y_eff = y + notch
        if waist:
            sw = F(1.0) - F(BODY_WAIST) * (F(1.0) - np.clip((2.0 * w / F(self.h)) ** 2, 0.0, 1.0))
        else:
            sw = F(1.0)
        b_eff = np.where(y_eff > 0, F(b), F(b) * sw)
        return y_eff, a * sw, b_eff

    def endplate_surface(self, u, v) -> np.ndarray:
        """|w| of the endplate bone surface at (u, v) (concave towards the disc)."""
        y_eff, _, _ = self._section(u, v, np.zeros_like(u) + F(self.h / 2), waist=False)
        rho = superellipse_rho(u, y_eff, F(self.a), F(self.b), self.spec.squareness)
        return F(self.h / 2) - F(self.c) * (F(1.0) - np.minimum(rho, 1.0) ** 2)

    def body_sdf_local(self, q: np.ndarray) -> np.ndarray:
        u, v, w = q[..., 0], q[..., 1], q[..., 2]
        y_eff, a_eff, b_eff = self._section(u, v, w)
        d2 = sd_superellipse(u, y_eff, a_eff, b_eff, self.spec.squareness)
        rho = superellipse_rho(u, y_eff, F(self.a), F(self.b), self.spec.squareness)
        surf = F(self.h / 2) - F(self.c) * (F(1.0) - np.minimum(rho, 1.0) ** 2)
        return sd_extrude(d2, np.abs(w) - surf)

    def body_corners(self, margin: float = 1.5) -> np.ndarray:
        return self.frame.box_corners((-self.a - margin, -2 * self.b - margin, -self.h / 2 - margin),
                                      (self.a + margin, margin, self.h / 2 + margin))

    # --- pedicles ------------------------------------------------------------------------------
    def pedicle_axis_local(self, side: int) -> np.ndarray:
        """Unit axis, posterior -> anterior (the direction of an instrument), side +1 left, -1 right."""
        return np.array([-side * math.sin(self.alpha), -math.cos(self.alpha), 0.0])

    def isthmus_local(self, side: int) -> np.ndarray:
        return np.array([side * self.u_isthmus, self.v_isthmus, self.w_isthmus])

    def _pedicle_sdf(self, side: int) -> SdfFn:
        ax = self.pedicle_axis_local(side).astype(F)
        eh = np.array([math.cos(self.alpha), -side * math.sin(self.alpha), 0.0], dtype=F)  # horizontal, perpendicular
        q0 = self.isthmus_local(side).astype(F)
        rw, rh = self.spec.pedicle_width / 2, self.spec.pedicle_height / 2
        la, lp = PEDICLE_LEN_ANT, PEDICLE_LEN_POST

        def f(p: np.ndarray) -> np.ndarray:
            q = self.frame.to_local(p) - q0
            xi = q @ ax
            eta = q @ eh
            zeta = q[..., 2]
            fl = F(1.0) + F(0.3) * (xi / F(10.0)) ** 2
            d2 = sd_superellipse(eta, zeta, F(rw) * fl, F(rh) * fl, 2.0)
            dxi = np.abs(xi - F((la - lp) / 2)) - F((la + lp) / 2)
            return sd_extrude(d2, dxi)

        return f

    def pedicle_posterior_end_local(self, side: int) -> np.ndarray:
        return self.isthmus_local(side) - PEDICLE_LEN_POST * self.pedicle_axis_local(side)

    # --- parts ---------------------------------------------------------------------------------
    def bone_parts(self) -> list[BonePart]:
        fr, sp = self.frame, self.spec
        parts = [BonePart(self.body_corners(), lambda p: self.body_sdf_local(fr.to_local(p)))]
        r_ped = max(sp.pedicle_width, sp.pedicle_height) * 0.75 + 2
        for side in (1, -1):
            a = self.isthmus_local(side) + (PEDICLE_LEN_ANT + 1) * self.pedicle_axis_local(side)
            b = self.pedicle_posterior_end_local(side)
            lo = np.minimum(a, b) - r_ped
            hi = np.maximum(a, b) + r_ped
            parts.append(BonePart(fr.box_corners(lo, hi), self._pedicle_sdf(side)))
        v_sp = SPINOUS_BASE_MM if self.name != "S1" else 19.0
        # laminae: vertical plates from the pedicle's posterior end to the spinous base
        for side in (1, -1):
            pe = self.pedicle_posterior_end_local(side)
            A = (pe[0] - side * 1.0, pe[1] - 0.5)
            B = (0.0, v_sp)
            t_half = 3.0
            w_lo, w_hi = -self.h / 2 - 3.0, self.h * 0.25

            def lam(p, A=A, B=B, t_half=t_half, w_lo=w_lo, w_hi=w_hi):
                q = fr.to_local(p)
                d2 = seg_dist2(q[..., 0], q[..., 1], A, B) - F(t_half)
                dz = np.abs(q[..., 2] - F((w_lo + w_hi) / 2)) - F((w_hi - w_lo) / 2)
                return sd_extrude(d2, dz)

            lo = (min(A[0], 0) - 4, min(A[1], B[1]) - 4, w_lo - 1)
            hi = (max(A[0], 0) + 4, max(A[1], B[1]) + 4, w_hi + 1)
            parts.append(BonePart(fr.box_corners(lo, hi), lam))
        if sp.spinous_length > 0:
            L = sp.spinous_length
            r = sp.spinous_radius
            cv, cw = v_sp - 3.0 + (L + 3.0) / 2, -0.2 * self.h - 2.0
            beta = math.radians(-10.0)  # sloping slightly caudally
            cb, sb = math.cos(beta), math.sin(beta)

            def spin(p, cv=cv, cw=cw, L=L, r=r):
                q = fr.to_local(p)
                dv, dw = q[..., 1] - F(cv), q[..., 2] - F(cw)
                x = dv * F(cb) + dw * F(sb)
                y = -dv * F(sb) + dw * F(cb)
                d2 = sd_round_box(x, y, (L + 3.0) / 2, r, 3.5)
                half_t = F(3.0) + F(1.2) * smoothstep(0.0, (L + 3.0) / 2, x)
                return sd_extrude(d2, np.abs(q[..., 0]) - half_t)

            ext = (L + 3.0) / 2 + r
            parts.append(BonePart(fr.box_corners((-5.0, cv - ext, cw - ext), (5.0, cv + ext, cw + ext)), spin))
        else:  # S1: a median sacral crest tubercle
            def crest(p):
                q = fr.to_local(p)
                d2 = seg_dist2(q[..., 1], q[..., 2], (v_sp - 2, -2.0), (v_sp + 6.0, -4.0)) - F(sp.spinous_radius)
                return sd_extrude(d2, np.abs(q[..., 0]) - F(3.0))

            parts.append(BonePart(fr.box_corners((-4, v_sp - 8, -10), (4, v_sp + 12, 4)), crest))
        if sp.tp_reach > 0:
            for side in (1, -1):
                a = self.isthmus_local(side) + np.array([side * 1.0, 2.0, 0.0])
                b = np.array([side * sp.tp_reach, self.v_isthmus + 5.0, self.w_isthmus - 1.5])
                aw, bw = fr.to_world(a), fr.to_world(b)
                r = sp.tp_radius
                lo = np.minimum(a, b) - 1.3 * r - 1
                hi = np.maximum(a, b) + 1.3 * r + 1
                parts.append(BonePart(fr.box_corners(lo, hi),
                                      lambda p, aw=aw, bw=bw, r=r: sd_capsule(p, aw, bw, (1.3 * r, 0.7 * r))))
        return parts + self.extra_parts

    # --- landmarks -------------------------------------------------------------------------------
    def _root(self, f: Callable[[float], float], lo: float, hi: float) -> float:
        flo = f(lo)
        for _ in range(48):
            mid = 0.5 * (lo + hi)
            fm = f(mid)
            if (fm < 0) == (flo < 0):
                lo, flo = mid, fm
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def _body_d(self, u: float, v: float, w: float) -> float:
        return float(self.body_sdf_local(np.array([[u, v, w]], dtype=F))[0])

    def landmarks_local(self) -> dict[str, np.ndarray]:
        """Body landmarks in the local frame: walls at mid-height on the midline, endplate centres."""
        if getattr(self, "_landmarks", None) is None:
            self._landmarks = self._compute_landmarks()
        return {k: v.copy() for k, v in self._landmarks.items()}

    def _compute_landmarks(self) -> dict[str, np.ndarray]:
        v_post = self._root(lambda v: self._body_d(0.0, v, 0.0), -self.b, 3.0)
        v_ant = self._root(lambda v: self._body_d(0.0, v, 0.0), -self.b, -2 * self.b - 3.0)
        v_mid = 0.5 * (v_post + v_ant)
        w_sup = self._root(lambda w: self._body_d(0.0, v_mid, w), 0.0, self.h / 2 + 3)
        w_inf = self._root(lambda w: self._body_d(0.0, v_mid, w), 0.0, -self.h / 2 - 3)
        w_c = 0.5 * (w_sup + w_inf)
        u_lat = self._root(lambda u: self._body_d(u, v_mid, w_c), 0.0, self.a + 3)
        return {
            "body_center": np.array([0.0, v_mid, w_c]),
            "superior_endplate": np.array([0.0, v_mid, w_sup]),
            "inferior_endplate": np.array([0.0, v_mid, w_inf]),
            "posterior_wall": np.array([0.0, v_post, w_c]),
            "anterior_wall": np.array([0.0, v_ant, w_c]),
            "pedicle_left": self.isthmus_local(1),
            "pedicle_right": self.isthmus_local(-1),
            "half_width_mid": np.array([u_lat, 0.0, 0.0]),
        }


# ------------------------------------------------------------------ disc
class Disc:
    """The disc between two vertebrae (or a remnant sacral disc): annulus with a nucleus."""

    def __init__(self, upper: Vertebra, lower: Vertebra, nucleus: Optional[Tissue], bulge: float,
                 remnant: bool = False) -> None:
        self.upper, self.lower = upper, lower
        self.nucleus = nucleus
        self.bulge = bulge
        self.remnant = remnant
        pu = upper.frame.to_world([0.0, 0.0, -upper.h / 2])
        pl = lower.frame.to_world([0.0, 0.0, lower.h / 2])
        wu, wl = upper.frame.rot[:, 2], lower.frame.rot[:, 2]
        w = unit(wu + wl)
        u = np.array([1.0, 0.0, 0.0])
        v = np.cross(w, u)
        self.frame = Frame(0.5 * (pu + pl), np.column_stack([u, v, w]))
        self.a = 0.5 * (upper.a + lower.a)
        self.b = 0.5 * (upper.b + lower.b)
        self.n = 2.5 if min(upper.spec.squareness, lower.spec.squareness) >= 2.5 else 2.0
        # height at the posterior wall line and in front
        self.half_extent = 0.5 * float(np.linalg.norm(pu - pl)) + 2 * self.b * 0.2 + 4.0

    def corners(self) -> np.ndarray:
        m = self.bulge + 2.0
        return self.frame.box_corners((-self.a - m, -2 * self.b - m, -self.half_extent),
                                      (self.a + m, m, self.half_extent))

    def paint(self, target: Target, labels: np.ndarray) -> None:
        box = target.box(self.corners())
        if box is None:
            return
        p = target.points(box)
        q = self.frame.to_local(p)
        u, v, w = q[..., 0], q[..., 1], q[..., 2]
        y = v + F(self.b)
        bul = F(self.bulge) * np.clip(F(1.0) - (w / F(6.0)) ** 2, 0.0, 1.0)
        b_eff = np.where(y > 0, F(self.b) + bul, F(self.b) + F(0.4) * bul)
        d2 = sd_superellipse(u, y, F(self.a) + F(0.5) * bul, b_eff, self.n)
        qu = self.upper.frame.to_local(p)
        ql = self.lower.frame.to_local(p)
        du = -qu[..., 2] - self.upper.endplate_surface(qu[..., 0], qu[..., 1])  # >0 below the upper body
        dl = ql[..., 2] - self.lower.endplate_surface(ql[..., 0], ql[..., 1])  # >0 above the lower body
        disc = (d2 < 0) & (du > -0.5) & (dl > -0.5)
        sub = labels[box]
        sub[disc] = Tissue.ANNULUS
        if self.nucleus is None:
            return
        rho_n = superellipse_rho(u, y + F(0.1 * self.b), F(self.a * 0.62), F(self.b * 0.58), 2.0)
        margin = F(1.0) + F(1.8) * rho_n ** 2
        nuc = disc & (rho_n < 1.0) & (du > margin) & (dl > margin)
        sub[nuc] = self.nucleus
        if self.nucleus == Tissue.NUCLEUS:  # intranuclear cleft of the adult disc
            mid = 0.5 * (du - dl)
            cleft = nuc & (np.abs(mid) < 0.55) & (rho_n < 0.75)
            sub[cleft] = Tissue.ANNULUS


# ------------------------------------------------------------------ the phantom
@dataclass
class ModicRegion:
    spec: ModicSpec
    vertebra: Vertebra

    @property
    def sign(self) -> float:
        return 1.0 if self.spec.endplate == "superior" else -1.0

    def _footprint(self, u, v):
        vt = self.vertebra
        a = vt.a * self.spec.footprint[0]
        b = vt.b * self.spec.footprint[1]
        uc, vc = 0.0, -vt.b + self.spec.offset_v_mm
        return np.sqrt(((u - F(uc)) / F(a)) ** 2 + ((v - F(vc)) / F(b)) ** 2)

    def height_map(self, u, v) -> np.ndarray:
        """Height of the band from the endplate surface (mm) over (u, v); 0 outside the footprint."""
        rho = self._footprint(u, v)
        ripple = F(0.94) + F(0.06) * np.sin(u * F(0.31) + F(0.7)) * np.cos(v * F(0.23) - F(0.4))
        prof = np.clip(F(1.0) - rho ** 4, 0.0, 1.0) ** F(0.35)
        return F(self.spec.max_height_mm) * prof * ripple

    def mask_local(self, q: np.ndarray) -> np.ndarray:
        vt = self.vertebra
        u, v, w = q[..., 0], q[..., 1], q[..., 2]
        surf = vt.endplate_surface(u, v)
        depth = surf - F(self.sign) * w  # distance below the endplate surface into the body
        return (depth >= 0) & (depth < self.height_map(u, v))


class Phantom:
    """The analytic phantom. Build once; sample with :meth:`labels_on_grid` or :meth:`labels_at`."""

    def __init__(self, settings: Optional[PlanningSettings] = None) -> None:
        self.settings = settings or PlanningSettings()
        self.specs = level_specs(self.settings)
        # sacral slope 40 deg at the S1 body (s = -14); lordosis L1-S1 about 37 deg
        self.curve = Curve(x0=1.5, y0=41.0, z0=-62.0, phi0_deg=40.0 - math.degrees(14.0 / 180.0),
                           r_lower=180.0, r_upper=600.0, s_join=80.0, s_lo=-70.0, s_hi=260.0)
        self._build_vertebrae()
        self._build_sacrum()
        self._build_facets()
        self.discs = [Disc(u, l, DISC_NUCLEUS.get(u.name, Tissue.NUCLEUS), DISC_BULGE.get(u.name, 0.5))
                      for u, l in zip(self.vertebrae[:-1], self.vertebrae[1:])]
        self.remnant_discs = [Disc(u, l, None, 0.0, remnant=True)
                              for u, l in zip([self.s1] + self.sacral[:-1], self.sacral)]
        by_name = {v.name: v for v in self.vertebrae}
        self.modic = [ModicRegion(m, by_name[m.level]) for m in MODIC]
        self._build_soft_tissue_tables()
        self._build_vessels_and_organs()
        self._ilium_setup()

    # --- assembly -----------------------------------------------------------------------------
    def _build_vertebrae(self) -> None:
        specs = self.specs
        s1 = specs[-1]
        s_c = [0.0] * len(specs)
        s_c[-1] = -s1.height / 2
        for i in range(len(specs) - 2, -1, -1):
            s_c[i] = s_c[i + 1] + specs[i + 1].height / 2 + specs[i].disc_below_mm + specs[i].height / 2
        self.vertebrae: list[Vertebra] = []
        for sp, s in zip(specs, s_c):
            angle = level_setting(self.settings.pedicle_transverse_angle_deg, "T12" if sp.name == "T11" else sp.name)
            self.vertebrae.append(Vertebra(sp, self.curve.frame(s), s, angle))
        self.s1 = self.vertebrae[-1]
        self.by_name = {v.name: v for v in self.vertebrae}

    def _build_sacrum(self) -> None:
        """S2-S5 as rigid segments turning with the sacral kyphosis, fused through the lateral masses."""
        sizes = [("S2", 36.0, 25.0, 21.0), ("S3", 29.0, 20.0, 17.0), ("S4", 21.0, 15.0, 13.0), ("S5", 15.0, 11.0, 10.0)]
        prev = self.s1
        prev_angle = self.curve.phi(prev.s_center)
        self.sacral: list[Vertebra] = []
        for name, wd, dp, ht in sizes:
            angle = prev_angle - math.radians(12.0)
            t_prev, n_prev = prev.frame.rot[:, 2], prev.frame.rot[:, 1]
            front = prev.frame.origin - (prev.h / 2) * t_prev - 2 * prev.b * n_prev  # anterior-inferior corner
            t = np.array([0.0, -math.sin(angle), math.cos(angle)])
            n = np.array([0.0, math.cos(angle), math.sin(angle)])
            top_front = front - 1.6 * unit(t + t_prev)
            origin = top_front - (ht / 2) * t + dp * n
            spec = LevelSpec(name, wd, dp, ht, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.5)
            vt = Vertebra(spec, Frame(origin, np.column_stack([[1.0, 0.0, 0.0], n, t])), prev.s_center, 0.0)
            vt.c = 0.3
            self.sacral.append(vt)
            prev, prev_angle = vt, angle

    def _sacral_parts(self) -> list[BonePart]:
        """S1 alae and the S2-S5 segments with lateral masses, posterior plate, canal and foramina."""
        parts: list[BonePart] = []
        s1 = self.s1
        fr = s1.frame
        h = s1.h

        def ala(p, side):
            q = fr.to_local(p)
            u, v, w = q[..., 0] * F(side), q[..., 1], q[..., 2]
            d2 = sd_superellipse(u - F(31.0), v + F(6.0), F(25.0), F(17.0), 2.5)
            w_top = F(h / 2 - 2.0) - F(0.3) * np.maximum(u - F(18.0), 0.0)
            dz = np.maximum(w - w_top, F(-h / 2 - 10.0) - w)
            return sd_extrude(d2, dz)

        for side in (1, -1):
            lo = (min(side * 5, side * 58), -25, -h / 2 - 12)
            hi = (max(side * 5, side * 58), 13, h / 2)
            parts.append(BonePart(fr.box_corners(lo, hi), lambda p, side=side: ala(p, side)))

        def plate(vt: Vertebra, half_w: float, v_c: float, half_d: float, ext: float):
            f2 = vt.frame

            def f(p):
                q = f2.to_local(p)
                d2 = sd_superellipse(q[..., 0], q[..., 1] - F(v_c), F(half_w), F(half_d), 2.5)
                return sd_extrude(d2, np.abs(q[..., 2]) - F(vt.h / 2 + ext))

            return BonePart(f2.box_corners((-half_w - 1, v_c - half_d - 1, -vt.h / 2 - ext - 1),
                                           (half_w + 1, v_c + half_d + 1, vt.h / 2 + ext + 1)), f)

        # S1 posterior plate (fused laminae) and S2.. segments
        parts.append(plate(s1, 24.0, 13.0, 9.0, 0.0))
        lateral = {"S2": (24.0, -4.0, 19.0, 20.0), "S3": (17.0, -2.0, 13.0, 14.0)}
        for vt in self.sacral:
            f2 = vt.frame
            parts.append(BonePart(vt.body_corners(), lambda p, vt=vt: vt.body_sdf_local(vt.frame.to_local(p))))
            if vt.name in lateral:
                uc, vc, au, bv = lateral[vt.name]
                for side in (1, -1):
                    def lat(p, vt=vt, side=side, uc=uc, vc=vc, au=au, bv=bv):
                        q = vt.frame.to_local(p)
                        d2 = sd_superellipse(q[..., 0] * F(side) - F(uc), q[..., 1] - F(vc), F(au), F(bv), 2.5)
                        return sd_extrude(d2, np.abs(q[..., 2]) - F(vt.h / 2 + 2.5))
                    lo = (min(side * (uc - au), side * (uc + au)) - 1, vc - bv - 1, -vt.h / 2 - 4)
                    hi = (max(side * (uc - au), side * (uc + au)) + 1, vc + bv + 1, vt.h / 2 + 4)
                    parts.append(BonePart(f2.box_corners(lo, hi), lat))
            if vt.name in ("S2", "S3", "S4"):
                hw = {"S2": 22.0, "S3": 16.0, "S4": 11.0}[vt.name]
                parts.append(plate(vt, hw, 11.0, 9.0, 7.0))
        # subtractions: sacral canal and anterior foramina (S1-S4)
        for vt, cw in [(s1, 13.0), (self.sacral[0], 11.0), (self.sacral[1], 9.0), (self.sacral[2], 6.5)]:
            parts.append(self._canal_cut(vt, cw))
        for vt in [s1] + self.sacral[:3]:
            half_w = vt.a + (5.0 if vt is s1 else 3.0)
            for side in (1, -1):
                a = vt.frame.to_world([side * half_w, -2 * vt.b - 8, -vt.h / 2 - 1.2])
                b = vt.frame.to_world([side * half_w, 12.0, -vt.h / 2 - 1.2])
                r = 4.0 if vt is s1 else 3.2
                lo = (side * half_w - r - 1, -2 * vt.b - 9, -vt.h / 2 - r - 2)
                hi = (side * half_w + r + 1, 13.0, -vt.h / 2 + r)
                lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
                parts.append(BonePart(vt.frame.box_corners(lo, hi),
                                      lambda p, a=a, b=b, r=r: sd_capsule(p, a, b, r), subtract=True))
        return parts

    def _canal_cut(self, vt: Vertebra, half_w: float, grow: float = 0.0) -> BonePart:
        f2 = vt.frame
        v_c, half_d = 7.5, 4.8 if vt is not self.s1 else 6.0

        def f(p):
            q = f2.to_local(p)
            d2 = sd_superellipse(q[..., 0], q[..., 1] - F(v_c), F(half_w + grow), F(half_d + grow), 2.0)
            return sd_extrude(d2, np.abs(q[..., 2]) - F(vt.h / 2 + 4.0))

        return BonePart(f2.box_corners((-half_w - 2, v_c - half_d - 2, -vt.h / 2 - 5),
                                       (half_w + 2, v_c + half_d + 2, vt.h / 2 + 5)), f, subtract=True)

    def _build_facets(self) -> None:
        """Facet joints between consecutive vertebrae: superior articular process of the lower vertebra
        (lateral, anterior) and inferior articular process of the upper one (medial, posterior)."""
        self.facet_joints: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for up, lo in zip(self.vertebrae[:-1], self.vertebrae[1:]):
            gamma = math.radians(FACET_ANGLE.get(up.name, 40.0))
            for side in (1, -1):
                x_f = lo.u_isthmus + 1.0
                j_local = np.array([side * x_f, lo.v_isthmus + 11.0, lo.h / 2 + 4.0])
                n_local = np.array([side * math.cos(gamma), -math.sin(gamma), 0.0])
                J = lo.frame.to_world(j_local)
                n = lo.frame.vec_to_world(n_local)
                wv = lo.frame.rot[:, 2]
                t = np.cross(wv, n)
                axes = np.stack([n, t, wv])  # rows
                gap = 1.6
                sap_c = J + n * (gap / 2 + 3.6)
                iap_c = J - n * (gap / 2 + 3.6) - 2.0 * wv
                lo.extra_parts.append(self._ellipsoid_part(sap_c, axes, (3.6, 7.0, 9.0)))
                up.extra_parts.append(self._ellipsoid_part(iap_c, axes, (3.6, 7.0, 9.0)))
                self.facet_joints.append((J, axes, np.array([gap / 2 + 1.3, 7.5, 9.5]), n))

    @staticmethod
    def _ellipsoid_part(center: np.ndarray, axes: np.ndarray, radii: Sequence[float],
                        subtract: bool = False) -> BonePart:
        c = center.astype(F)
        ax = axes.astype(F)
        r = [F(x) for x in radii]
        ext = np.abs(axes.T) @ np.asarray(radii)
        corners = np.array([[center[0] + sx * ext[0], center[1] + sy * ext[1], center[2] + sz * ext[2]]
                            for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])

        def f(p):
            q = (p - c) @ ax.T
            return sd_ellipsoid(q[..., 0], q[..., 1], q[..., 2], r[0], r[1], r[2])

        return BonePart(corners, f, subtract)

    # --- pelvis ----------------------------------------------------------------------------------
    ILIUM_AXES = (88.0, 90.0)  # semi-axes (lateral, AP) of the wing's curve at the crest, mm
    ILIUM_CENTER = (34.0, -64.0)  # centre of that curve: lateral offset, AP offset from the S1 wall line
    ILIUM_THETA = (-58.0, 78.0)  # the wing runs from the ASIS (anterior) to the sacroiliac joint, deg

    def _ilium_setup(self) -> None:
        l45 = self.by_name["L4"].frame.to_world([0.0, 0.0, -self.by_name["L4"].h / 2 - 3.0])
        self.iliac_crest_z = float(l45[2]) + 4.0
        self._ilium_cy = float(self.s1.frame.origin[1]) + self.ILIUM_CENTER[1]

    def _ilium_coords(self, p: np.ndarray, side: int):
        """Coordinates of points relative to one iliac wing: (rho, r_eff, theta, z, z_top, theta_lo)."""
        ax0, ay0 = self.ILIUM_AXES
        z_cr = self.iliac_crest_z
        x = (p[..., 0] - F(self.curve.x0 + side * self.ILIUM_CENTER[0])) * F(side)
        y = p[..., 1] - F(self._ilium_cy)
        z = p[..., 2]
        fz = F(1.0) - F(0.18) * np.clip((F(z_cr) - z) / F(130.0), 0.0, 1.0)
        rho = np.sqrt((x / (F(ax0) * fz)) ** 2 + (y / (F(ay0) * fz)) ** 2) + F(1e-6)
        r_eff = np.sqrt(x * x + y * y) / rho
        th = np.arctan2(y, x)
        z_top = F(z_cr) - F(30.0) * ((th - F(math.radians(15.0))) / F(math.radians(75.0))) ** 2
        # the anterior border recedes below the anterior superior iliac spine
        th_lo = F(math.radians(self.ILIUM_THETA[0])) \
            + F(math.radians(38.0)) * smoothstep(0.0, 45.0, z_top - F(22.0) - z)
        return rho, r_eff, th, z, z_top, th_lo

    def _ilium_corners(self, side: int, pad: float = 0.0) -> np.ndarray:
        ax0, ay0 = self.ILIUM_AXES
        cx = self.curve.x0 + side * self.ILIUM_CENTER[0]
        x0 = self.curve.x0
        xr = (x0 + side * 25.0, cx + side * (ax0 + 12 + pad))
        return aabb_corners((min(xr), self._ilium_cy - ay0 - 12 - pad, self.iliac_crest_z - 141 - pad),
                            (max(xr), self._ilium_cy + ay0 * 0.6 + 30 + pad, self.iliac_crest_z + 12))

    def _ilium_parts(self) -> list[BonePart]:
        parts = []
        th_hi = math.radians(self.ILIUM_THETA[1])
        z_bot = self.iliac_crest_z - 140.0
        for side in (1, -1):
            def f(p, side=side):
                rho, r_eff, th, z, z_top, th_lo = self._ilium_coords(p, side)
                t = F(6.0) + F(7.0) * np.exp(-np.maximum(z_top - z, 0.0) / F(8.0))
                d_rad = np.abs(rho - F(1.0)) * r_eff - t / F(2.0)
                d_ang = np.maximum(th_lo - th, th - F(th_hi)) * r_eff
                return np.maximum(np.maximum(d_rad, d_ang), np.maximum(z - z_top, F(z_bot) - z))

            parts.append(BonePart(self._ilium_corners(side), f))
        return parts

    def _paint_pelvic_muscles(self, target: Target, labels: np.ndarray) -> None:
        """Gluteal muscles outside the iliac wings and the iliacus inside them."""
        th_hi = math.radians(self.ILIUM_THETA[1])
        for side in (1, -1):
            box = target.box(self._ilium_corners(side, pad=30.0))
            if box is None:
                continue
            rho, r_eff, th, z, z_top, th_lo = self._ilium_coords(target.points(box), side)
            below = z < z_top - F(4.0)
            dist = (rho - F(1.0)) * r_eff
            sector = (th > th_lo - F(0.15)) & (th < F(th_hi + 0.1))
            sub = labels[box]
            inside_body = sub != Tissue.AIR
            glut = below & sector & (dist > 0) & (dist < F(34.0)) & (z > F(self.iliac_crest_z - 140.0)) & inside_body
            sub[glut & ((sub == Tissue.FAT) | (sub == Tissue.MUSCLE))] = Tissue.MUSCLE
            iliac = below & (th > F(-0.7)) & (th < F(1.55)) & (dist < 0) & (dist > F(-22.0)) & inside_body
            sub[iliac & ((sub == Tissue.FAT) | (sub == Tissue.BOWEL) | (sub == Tissue.GAS))] = Tissue.MUSCLE

    # --- soft tissue along the spine ---------------------------------------------------------
    def _build_soft_tissue_tables(self) -> None:
        vts = self.vertebrae
        s = np.array([v.s_center for v in vts])[::-1]
        self._s_tab = s
        self._a_tab = np.array([v.a for v in vts])[::-1]
        self._d_tab = np.array([2 * v.b for v in vts])[::-1]
        self._cw_tab = np.array([v.spec.canal_width for v in vts])[::-1]
        # torso: back skin follows the posterior wall line (+ offset), tables over z
        ss = np.linspace(-120.0, 330.0, 200)
        pts = np.array([self.curve.point(float(x)) for x in ss])
        order = np.argsort(pts[:, 2])
        self._z_tab = pts[order, 2]
        y_pw = pts[order, 1]
        s_sorted = ss[order]
        s1_bottom = -self.s1.h
        # below the S1 body the skin does not follow the sacrum's posterior turn
        y_floor = float(self.curve.point(s1_bottom)[1])
        y_pw = np.where(s_sorted < s1_bottom, y_floor + 0.25 * (y_pw - y_floor), y_pw)
        self._ypw_tab = y_pw
        self._back_off = np.interp(s_sorted, [-120, -40, 0, 300], [66.0, 72.0, 84.0, 86.0])
        self._zu_step = 0.5
        self._zu0 = float(self._z_tab[0])
        zu = np.arange(self._zu0, float(self._z_tab[-1]) + self._zu_step, self._zu_step)
        self._ypw_u = np.interp(zu, self._z_tab, y_pw).astype(F)
        self._back_u = (self._ypw_u + np.interp(zu, self._z_tab, self._back_off)).astype(F)
        l3 = self.curve.point(self.by_name["L3"].s_center)
        self._y_front0 = float(l3[1]) - 150.0
        self._z_belly = float(l3[2]) - 15.0

    def interp_s(self, tab: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.interp(s, self._s_tab, tab).astype(F)

    def torso_y(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(y of the posterior wall line, y of the back skin) at heights z."""
        t = np.clip((z - F(self._zu0)) * F(1.0 / self._zu_step), 0.0, F(len(self._ypw_u) - 1.001))
        i = t.astype(np.int32)
        f = t - i
        ypw = self._ypw_u[i] * (1 - f) + self._ypw_u[i + 1] * f
        back = self._back_u[i] * (1 - f) + self._back_u[i + 1] * f
        return ypw, back

    def _build_vessels_and_organs(self) -> None:
        c = self.curve
        L1, L4, L5 = self.by_name["L1"], self.by_name["L4"], self.by_name["L5"]
        self.s_aorta_bif = L4.s_center - 4.0
        self.s_ivc_conf = L5.s_center
        d_bif = 2 * L4.b
        self.iliac_arteries = [(c.world(side * 3.0 + 12.0 * 0.5, -(d_bif + 13.0), self.s_aorta_bif),
                                c.world(side * 48.0, -(d_bif + 34.0), self.s_aorta_bif - 75.0)) for side in (1, -1)]
        d5 = 2 * L5.b
        self.iliac_veins = [(c.world(-16.0 + side * 6.0, -(d5 + 9.0), self.s_ivc_conf),
                             c.world(side * 46.0, -(d5 + 24.0), self.s_ivc_conf - 70.0)) for side in (1, -1)]
        self.kidneys = []
        for side, ds in ((1, -4.0), (-1, -20.0)):
            ctr = c.world(side * 78.0, -8.0, L1.s_center + ds)
            axes = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            tilt = np.radians(side * 14.0)  # upper pole medial
            rz = np.array([[math.cos(tilt), 0.0, -math.sin(tilt)], [0.0, 1.0, 0.0],
                           [math.sin(tilt), 0.0, math.cos(tilt)]])
            self.kidneys.append((ctr, rz @ axes))
        rng = np.random.default_rng(20240315)
        self.gas = []
        for _ in range(26):
            s = rng.uniform(-150.0, 230.0)
            x = rng.uniform(-105.0, 105.0)
            v = rng.uniform(-135.0, -85.0)
            r = rng.uniform(5.0, 15.0, size=3) * np.array([1.3, 0.8, 1.0])
            self.gas.append((np.array([x, v, s]), r))
        lattice = rng.standard_normal((64, 64, 64)).astype(F)
        lattice = ndimage.gaussian_filter(lattice, 1.0, mode="wrap")
        self._noise = (lattice / lattice.std()).astype(F)
        self._noise_step = 7.0

    # --- painting ------------------------------------------------------------------------------
    def paint(self, target: Target, bones: bool | Sequence[str] = True, soft: bool = True,
              coarse: Optional[tuple[Target, int]] = None) -> np.ndarray:
        """Labels at the points of ``target``. With ``coarse = (target_c, r)`` the large soft tissues
        (body outline, organs, muscles, vessels) are evaluated on ``target_c`` and repeated ``r`` times
        along k (``target`` then samples r sub-slices per slice of ``target_c``). ``bones`` may name the
        bone groups to paint: "spine" (vertebrae and sacrum) and "pelvis" (iliac wings)."""
        groups = ("spine", "pelvis") if bones is True else (() if bones is False else tuple(bones))
        if soft and coarse is not None:
            tc, r = coarse
            lc = tc.empty()
            self._paint_large(tc, lc)
            labels = np.repeat(lc, r, axis=0)
        else:
            labels = target.empty()
            if soft:
                self._paint_large(target, labels)
        if soft:
            self._paint_spine_soft(target, labels)
            for d in self.discs + self.remnant_discs:
                d.paint(target, labels)
        if "spine" in groups:
            for vt in self.vertebrae[:-1]:
                box = self._paint_bone(target, labels, vt.bone_parts())
                self._paint_marrow_features(target, labels, vt, box)
            box = self._paint_bone(target, labels, self.s1.bone_parts() + self._sacral_parts())
            self._paint_marrow_features(target, labels, self.s1, box)
        if "pelvis" in groups:
            for part in self._ilium_parts():
                self._paint_bone(target, labels, [part])
        return labels

    def labels_at(self, points_lps: np.ndarray) -> np.ndarray:
        """Tissue labels (:class:`Tissue` values) at LPS points (..., 3)."""
        pts = np.asarray(points_lps, dtype=float)
        lab = self.paint(PointTarget(pts.reshape(-1, 3)))
        return lab.reshape(pts.shape[:-1])

    def labels_on_grid(self, ijk_to_lps: np.ndarray, shape_kji: Sequence[int], bones: bool | Sequence[str] = True,
                       soft: bool = True, sub_slices: int = 1) -> np.ndarray:
        """Labels on a regular grid; array (k, j, i) as in :class:`planner.imaging.volume.Volume`.

        With ``sub_slices = r > 1`` the result has ``r`` sub-slices per slice (shape (r*nk, nj, ni)),
        evenly spread through each slice's thickness (offsets (m + 0.5) / r - 0.5 of the spacing), for
        partial-volume averaging; the large soft tissues are then evaluated once per slice."""
        if sub_slices <= 1:
            return self.paint(GridTarget(ijk_to_lps, shape_kji), bones=bones, soft=soft)
        r = int(sub_slices)
        m = np.array(ijk_to_lps, dtype=float)
        fine = m.copy()
        fine[:3, 2] = m[:3, 2] / r
        fine[:3, 3] = m[:3, 3] + m[:3, 2] * ((0.5 / r) - 0.5)
        nk, nj, ni = shape_kji
        coarse = (GridTarget(m, shape_kji), r)
        return self.paint(GridTarget(fine, (nk * r, nj, ni)), bones=bones, soft=soft, coarse=coarse)

    def _paint_large(self, target: Target, labels: np.ndarray) -> None:
        self._paint_torso(target, labels)
        self._paint_organs(target, labels)
        self._paint_pelvic_muscles(target, labels)
        self._paint_muscles_vessels(target, labels)

    def texture_at(self, points_lps: np.ndarray) -> np.ndarray:
        """A smooth deterministic texture field in about [-1, 1]."""
        idx = np.asarray(points_lps, dtype=F) / F(self._noise_step)
        i0 = np.floor(idx)
        f = idx - i0
        i0 = i0.astype(np.int64) % 64
        i1 = (i0 + 1) % 64
        lat = self._noise.reshape(-1)
        out = np.zeros(idx.shape[:-1], dtype=F)
        for cx, wx in ((i0[..., 0], 1 - f[..., 0]), (i1[..., 0], f[..., 0])):
            for cy, wy in ((i0[..., 1], 1 - f[..., 1]), (i1[..., 1], f[..., 1])):
                base = (cx * 64 + cy) * 64
                wxy = wx * wy
                out += wxy * ((1 - f[..., 2]) * lat[base + i0[..., 2]] + f[..., 2] * lat[base + i1[..., 2]])
        return np.clip(out * F(0.6), -1.0, 1.0).astype(F)

    @staticmethod
    def _shape(box) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in box)

    def _paint_bone(self, target: Target, labels: np.ndarray, parts: list[BonePart]):
        vbox, d = self._bone_sdf(target, parts)
        if vbox is None:
            return None
        sub = labels[vbox]
        sub[d < 0] = Tissue.CORTEX
        sub[d < -CORTEX_MM] = Tissue.MARROW
        return vbox

    #: Relative density of the sacrum's cancellous bone (the sacral alae are less dense than the lumbar
    #: bodies); used by :meth:`bone_density_on_grid` only.
    SACRAL_MARROW_DENSITY = 0.55

    def bone_groups(self, groups: Sequence[str]) -> list[tuple[list[BonePart], float]]:
        """(parts, relative marrow density) of each bone in the named groups."""
        out: list[tuple[list[BonePart], float]] = []
        if "spine" in groups:
            out += [(vt.bone_parts(), 1.0) for vt in self.vertebrae[:-1]]
            out.append((self.s1.bone_parts() + self._sacral_parts(), self.SACRAL_MARROW_DENSITY))
        if "pelvis" in groups:
            out += [([p], 1.0) for p in self._ilium_parts()]
        return out

    def bone_density_on_grid(self, ijk_to_lps: np.ndarray, shape_kji: Sequence[int], groups: Sequence[str],
                             cortex: float, marrow: float, edge_mm: float) -> np.ndarray:
        """Anti-aliased bone density on a grid: ``cortex`` in the cortical shell and ``marrow`` inside,
        with partial-volume ramps of width ``edge_mm`` at every surface (for projections)."""
        target = GridTarget(ijk_to_lps, shape_kji)
        out = np.zeros(target.shape, dtype=F)
        for parts, density in self.bone_groups(groups):
            vbox, d = self._bone_sdf(target, parts)
            if vbox is None:
                continue
            occ_out = np.clip(F(0.5) - d / F(edge_mm), 0.0, 1.0)
            occ_in = np.clip(F(0.5) - (d + F(CORTEX_MM)) / F(edge_mm), 0.0, 1.0)
            val = F(cortex) * (occ_out - occ_in) + F(marrow * density) * occ_in
            np.maximum(out[vbox], val, out=out[vbox])
        return out

    def _bone_sdf(self, target: Target, parts: list[BonePart]):
        boxes = [target.box(p.corners) for p in parts]
        vbox = None
        for p, b in zip(parts, boxes):
            if not p.subtract:
                vbox = target.union(vbox, b)
        if vbox is None:
            return None, None
        d = np.full(self._shape(vbox), np.inf, dtype=F)
        for p, b in zip(parts, boxes):
            if b is None or p.subtract:
                continue
            b = tuple(slice(max(x.start, o.start), min(x.stop, o.stop)) for x, o in zip(b, vbox))
            rel = target.relative(b, vbox)
            d[rel] = np.minimum(d[rel], p.sdf(target.points(b)))
        for p, b in zip(parts, boxes):
            if b is None or not p.subtract:
                continue
            b = tuple(slice(max(x.start, o.start), min(x.stop, o.stop)) for x, o in zip(b, vbox))
            if any(s.start >= s.stop for s in b):
                continue
            rel = target.relative(b, vbox)
            d[rel] = np.maximum(d[rel], -p.sdf(target.points(b)))
        return vbox, d

    def _paint_marrow_features(self, target: Target, labels: np.ndarray, vt: Vertebra, vbox) -> None:
        box = target.box(vt.body_corners())
        if box is None or vbox is None:
            return
        p = target.points(box)
        q = vt.frame.to_local(p)
        sub = labels[box]
        for m in self.modic:
            if m.vertebra is vt:
                mask = m.mask_local(q) & (sub == Tissue.MARROW)
                sub[mask] = Tissue.MODIC1 if m.spec.modic_type == "1" else Tissue.MODIC2
        # basivertebral foramen: a channel from the posterior wall into the body, ending in a small lake
        lm = self.bvf_local(vt)
        a, b = lm["foramen"], lm["terminus"]
        d = sd_capsule(q, a + np.array([0.0, 3.0, 0.0]), b, 1.6)
        d = np.minimum(d, sd_ellipsoid(q[..., 0] - F(b[0]), q[..., 1] - F(b[1]), q[..., 2] - F(b[2]), 3.2, 2.0, 2.5))
        bone = (sub == Tissue.CORTEX) | (sub == Tissue.MARROW) | (sub == Tissue.MODIC1) | (sub == Tissue.MODIC2)
        sub[(d < 0) & bone] = Tissue.BASIVERTEBRAL

    def bvf_local(self, vt: Vertebra) -> dict[str, np.ndarray]:
        lm = vt.landmarks_local()
        w = vt.spec.bvf_rise * vt.h
        v_post = lm["posterior_wall"][1]
        depth = 0.17 * (lm["posterior_wall"][1] - lm["anterior_wall"][1])
        return {"foramen": np.array([0.0, v_post, w]), "terminus": np.array([0.0, v_post - depth, w])}

    def _paint_torso(self, target: Target, labels: np.ndarray) -> None:
        box = target.box(None)
        p = target.points(box)
        x = p[..., 0] - F(self.curve.x0)
        y, z = p[..., 1], p[..., 2]
        ypw, yback = self.torso_y(z)
        yfront = F(self._y_front0) + F(0.0009) * (z - F(self._z_belly)) ** 2
        ay = (yback - yfront) / F(2.0)
        yc = yback - ay
        zr = z - F(self.s1.frame.origin[2])
        ax = F(140.0) + F(28.0) * smoothstep(10.0, -90.0, zr)
        # posterior midline groove between the paraspinal muscles
        groove = F(7.0) * np.exp(-(x / F(22.0)) ** 2) * (y > yc)
        d = sd_superellipse(x, y - yc + groove, ax, ay, 2.5)
        sub = labels[box]
        sub[d < 0] = Tissue.SKIN
        sub[d < -2.0] = Tissue.FAT
        fat_t = np.where(y > ypw + 20.0, F(11.0), F(19.0))
        wall = (d < -fat_t) & (d > -fat_t - 11.0) & (y < ypw - 10.0)
        sub[wall] = Tissue.MUSCLE
        cavity = (d <= -fat_t - 11.0) & (y < ypw - 68.0 - F(0.0012) * x * x)
        sub[cavity] = Tissue.BOWEL

    def _paint_organs(self, target: Target, labels: np.ndarray) -> None:
        c = self.curve
        # bowel gas
        for ctr_c, r in self.gas:
            ctr = c.world(float(ctr_c[0]), float(ctr_c[1]), float(ctr_c[2]))
            corners = aabb_corners(ctr - (r.max() + 1), ctr + (r.max() + 1))
            box = target.box(corners)
            if box is None:
                continue
            p = target.points(box) - ctr.astype(F)
            d = sd_ellipsoid(p[..., 0], p[..., 1], p[..., 2], *[F(x) for x in r])
            sub = labels[box]
            sub[(d < 0) & (sub == Tissue.BOWEL)] = Tissue.GAS
        # kidneys with renal sinus fat
        for ctr, axes in self.kidneys:
            ext = np.abs(axes.T) @ np.array([32.0, 34.0, 60.0])
            corners = aabb_corners(ctr - ext, ctr + ext)
            box = target.box(corners)
            if box is None:
                continue
            q = (target.points(box) - ctr.astype(F)) @ axes.astype(F).T
            d = sd_ellipsoid(q[..., 0], q[..., 1], q[..., 2], F(26.0), F(29.0), F(54.0))
            sub = labels[box]
            sub[d < 0] = Tissue.KIDNEY
            side = 1.0 if ctr[0] > c.x0 else -1.0
            ds = sd_ellipsoid(q[..., 0] + F(side * 9.0), q[..., 1] + F(4.0), q[..., 2], F(9.0), F(8.0), F(24.0))
            sub[ds < 0] = Tissue.FAT

    def _curv_box(self, target: Target, u_lo, u_hi, v_lo, v_hi, s_lo, s_hi):
        box = target.box(self.curve.corners(u_lo, u_hi, v_lo, v_hi, s_lo, s_hi))
        if box is None:
            return None, None
        p = target.points(box)
        return box, (p,) + self.curve.coords(p)

    def _paint_muscles_vessels(self, target: Target, labels: np.ndarray) -> None:
        top = self.vertebrae[0].s_center + 40.0
        s_bot = -self.s1.h - 60.0
        a_tab, d_tab = self._a_tab, self._d_tab
        # --- muscles: paraspinal, quadratus lumborum, psoas
        box, pc = self._curv_box(target, -80, 80, -70, 80, s_bot - 40, top)
        if box is not None:
            _, u, v, s = pc
            sub = labels[box]
            a = self.interp_s(a_tab, s)
            dd = self.interp_s(d_tab, s)
            taper = smoothstep(-95.0, -30.0, s)
            ps = np.abs(u)
            para = sd_superellipse(ps - F(33.0), v - F(41.0), F(36.0) * (F(0.55) + F(0.45) * taper),
                                   F(32.0) * (F(0.6) + F(0.4) * taper), 2.5) < 0
            inside = (sub != Tissue.AIR) & (sub != Tissue.SKIN)  # muscles stay under the skin
            para &= inside & (taper > 0.05)
            sub[para] = Tissue.MUSCLE
            sub[para & (ps < 1.0) & (v > 18.0) & (v < 62.0)] = Tissue.LIGAMENT
            septum = para & (np.abs(ps - (F(22.0) + F(0.35) * (v - F(25.0)))) < 0.7) & (v > 22.0)
            sub[septum] = Tissue.FAT
            l1 = self.by_name["L1"].s_center
            l5 = self.by_name["L5"].s_center
            ql = smoothstep(l5 - 15, l5 + 5, s) * smoothstep(l1 + 25, l1 - 5, s) + F(0.0)
            qlm = sd_superellipse(ps - (a + F(40.0)), v - F(4.0), F(16.0) * ql + F(0.01), F(8.0) * ql + F(0.01),
                                  2.0) < 0
            sub[qlm & (ql > 0.1) & inside] = Tissue.MUSCLE
            s_t12 = self.by_name["T12"].s_center
            r = np.interp(s, [s_bot - 40.0, s_bot, -30.0, 0.0, self.by_name["L5"].s_center,
                              self.by_name["L3"].s_center, l1, s_t12 - 10, s_t12 + 5],
                          [0.0, 20.0, 22.0, 22.0, 21.0, 16.0, 8.0, 4.0, 0.0]).astype(F)
            below = np.maximum(F(-20.0) - s, 0.0)
            uc = a + r * F(0.9) + F(2.0) + below * F(0.45)
            vc = -dd * F(0.45) - F(2.0) - below * F(0.35)
            pso = sd_superellipse(ps - uc, v - vc, r + F(0.01), r * F(0.85) + F(0.01), 2.0) < 0
            sub[pso & (r > 0.5) & inside] = Tissue.MUSCLE
        # --- aorta, IVC, iliac vessels
        box, pc = self._curv_box(target, -40, 35, -80, -25, self.s_ivc_conf - 5, top)
        if box is not None:
            _, u, v, s = pc
            sub = labels[box]
            dd = self.interp_s(d_tab, s)
            ao = ((u - F(12.0)) ** 2 + (v + dd + F(13.0)) ** 2 < F(11.5 ** 2)) & (s > self.s_aorta_bif)
            sub[ao] = Tissue.ARTERY
            ivc = sd_superellipse(u + F(20.0), v + dd + F(10.0), F(13.0), F(9.0), 2.0) < 0
            sub[ivc & (s > self.s_ivc_conf)] = Tissue.VEIN
        for (a_, b_), r, t in [(seg, 6.5, Tissue.ARTERY) for seg in self.iliac_arteries] + \
                              [(seg, 7.5, Tissue.VEIN) for seg in self.iliac_veins]:
            corners = aabb_corners(np.minimum(a_, b_) - (r + 1), np.maximum(a_, b_) + (r + 1))
            box = target.box(corners)
            if box is None:
                continue
            sub = labels[box]
            dcap = sd_capsule(target.points(box), a_, b_, r)
            sub[dcap < 0] = t

    def _paint_spine_soft(self, target: Target, labels: np.ndarray) -> None:
        top = self.vertebrae[0].s_center + 40.0
        cw_tab = self._cw_tab
        # --- canal: epidural fat, ligamentum flavum, thecal sac, cord, cauda equina (in chunks along s)
        s_edges = np.arange(-self.s1.h - 5.0, top + 30.0, 30.0)
        for s_a, s_b in zip(s_edges[:-1], s_edges[1:]):
            box, pc = self._curv_box(target, -22, 22, -3, 22, float(s_a), float(s_b))
            if box is None:
                continue
            _, u, v, s = pc
            sub = labels[box]
            cw = self.interp_s(cw_tab, s)
            rho = np.sqrt((u / (cw * F(0.5) + F(2.5))) ** 2 + ((v - F(8.5)) / F(9.5)) ** 2)
            canal = rho < 1.0
            sub[canal & (s > -self.s1.h - 4)] = Tissue.EPIDURAL_FAT
            sub[canal & (rho > 0.80) & (v > 10.5)] = Tissue.LIGAMENT
            s_end = -self.s1.h - 14.0
            taper = np.sqrt(smoothstep(s_end, s_end + 22.0, s))
            sa = cw * F(0.4) * taper + F(1e-3)
            sb = F(6.0) * taper + F(1e-3)
            rs = np.sqrt((u / sa) ** 2 + ((v - F(7.5)) / sb) ** 2)
            sac = rs < 1.0
            sub[sac] = Tissue.CSF
            # conus medullaris ending at the L1/L2 disc
            L1 = self.by_name["L1"]
            s_tip = L1.s_center - L1.h / 2 - 3.0
            cr = F(4.2) * np.sqrt(smoothstep(s_tip, s_tip + 28.0, s))
            cord = (u * u + ((v - F(7.5)) / F(0.85)) ** 2 < cr * cr) & sac
            sub[cord] = Tissue.NERVE
            # cauda equina: roots layering posteriorly in the sac (supine)
            n_roots = 14
            th = np.linspace(math.radians(200), math.radians(340), n_roots)
            rr = F(1.05)
            roots = np.zeros(u.shape, dtype=bool)
            for k, t in enumerate(th):
                ku = F(0.72 * math.cos(t))
                kv = F(-0.55 * math.sin(t))
                ru = u - ku * sa
                rv = v - (F(7.5) + kv * sb)
                roots |= (ru * ru + rv * rv < rr * rr)
            sub[roots & sac & (s < s_tip + 25.0) & (rs < 0.92)] = Tissue.NERVE
        # sacral canal contents below S1
        for vt, cw in [(self.sacral[0], 11.0), (self.sacral[1], 9.0), (self.sacral[2], 6.5)]:
            part = self._canal_cut(vt, cw, grow=0.6)
            box = target.box(part.corners)
            if box is None:
                continue
            sub = labels[box]
            sub[part.sdf(target.points(box)) < 0] = Tissue.EPIDURAL_FAT
        # foramina with their exiting roots and dorsal root ganglia
        for vt in self.vertebrae[1:]:
            for side in (1, -1):
                fr = vt.frame
                u_i, v_i, w_i = vt.isthmus_local(side)
                w_f = w_i - vt.spec.pedicle_height / 2 - 5.0
                fc = fr.to_world([u_i + side * 1.0, v_i - 3.0, w_f])
                ext = np.array([10.0, 10.0, 10.0])
                corners = aabb_corners(fc - ext, fc + ext)
                box = target.box(corners)
                if box is not None:
                    q = fr.to_local(target.points(box)) - np.array([u_i + side * 1.0, v_i - 3.0, w_f], dtype=F)
                    sub = labels[box]
                    sub[sd_ellipsoid(q[..., 0], q[..., 1], q[..., 2], F(8.0), F(7.0), F(7.5)) < 0] = Tissue.EPIDURAL_FAT
                if vt is self.s1:
                    continue
                cwh = vt.spec.canal_width * 0.4
                p0 = fr.to_world([side * (cwh - 1.5), 6.0, w_i + 6.0])
                ua = vt.u_isthmus
                p1 = fr.to_world([side * (ua + 1.5), v_i - 3.0, w_f])
                p2 = fr.to_world([side * (ua + 26.0), v_i - 14.0, w_f - 16.0])
                for a_, b_, r in ((p0, p1, 1.6), (p1, p2, 2.0)):
                    corners = np.array([a_ - 4, a_ + 4, b_ - 4, b_ + 4])
                    corners = np.array([[x, y, z] for x in (corners[:, 0].min(), corners[:, 0].max())
                                        for y in (corners[:, 1].min(), corners[:, 1].max())
                                        for z in (corners[:, 2].min(), corners[:, 2].max())])
                    box = target.box(corners)
                    if box is None:
                        continue
                    sub = labels[box]
                    sub[sd_capsule(target.points(box), a_, b_, r) < 0] = Tissue.NERVE
                box = target.box(aabb_corners(p1 - 6, p1 + 6))
                if box is not None:
                    q = fr.to_local(target.points(box)) - np.array([side * (ua + 1.5), v_i - 3.0, w_f], dtype=F)
                    sub = labels[box]
                    sub[sd_ellipsoid(q[..., 0], q[..., 1], q[..., 2], F(3.4), F(3.0), F(4.5)) < 0] = Tissue.NERVE
        # facet joints (cartilage and fluid between the articular processes)
        for J, axes, radii, _n in self.facet_joints:
            part = self._ellipsoid_part(J, axes, radii)
            box = target.box(part.corners)
            if box is None:
                continue
            sub = labels[box]
            sub[part.sdf(target.points(box)) < 0] = Tissue.FACET_JOINT
