"""A simple drawing of the lower spine seen from the side, for the patient sheet.

Drawn in code with Pillow (no image files): the lumbar vertebrae (L1-L5, L6 when the plan has a
transitional level) and the top of the sacrum (S1), the front of the body on the left (as on the
sagittal MRI), the discs between the bones, and the bones to be treated filled in orange and labelled.
It is an illustration, not the patient's anatomy.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from planner.report.keyimages import _font

TREATED_FILL = (242, 140, 40)
TREATED_EDGE = (150, 70, 0)
BONE_FILL = (236, 229, 214)
BONE_EDGE = (120, 110, 95)
DISC_FILL = (150, 190, 225)
INK = (30, 34, 40)


def _rotated_rect(cx: float, cy: float, w: float, h: float, angle_rad: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    out = []
    for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
        out.append((cx + dx * c - dy * s, cy + dx * s + dy * c))
    return out


def _rounded_polygon(points: Sequence[tuple[float, float]], radius: float, steps: int = 6) -> list[tuple[float, float]]:
    """Corners of a convex polygon rounded off (a drawing nicety)."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    out: list[tuple[float, float]] = []
    for i in range(n):
        p_prev, p, p_next = pts[i - 1], pts[i], pts[(i + 1) % n]
        a = (p_prev - p) / np.linalg.norm(p_prev - p)
        b = (p_next - p) / np.linalg.norm(p_next - p)
        start, end = p + a * radius, p + b * radius
        for t in np.linspace(0, 1, steps):
            q = (1 - t) ** 2 * start + 2 * (1 - t) * t * p + t ** 2 * end
            out.append((float(q[0]), float(q[1])))
    return out


def draw_lumbar_spine(treated: Iterable[str], *, levels: Sequence[str] = ("L1", "L2", "L3", "L4", "L5", "S1"),
                      treated_label: str = "to be treated", front_label: str = "Front of body",
                      back_label: str = "Back", head_label: str = "Head", width: int = 640) -> Image.Image:
    """The drawing as an RGB image ``width`` pixels wide (height 1.45 x width)."""
    treated_set = {t.upper() for t in treated}
    scale = width / 640.0
    height = int(round(width * 1.45))
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    label_font = _font(int(40 * scale))
    small_font = _font(int(30 * scale))

    lumbar = [lv for lv in levels if lv != "S1"]
    n = len(lumbar)
    top, bottom = 95 * scale, height - 250 * scale
    step = (bottom - top) / max(n, 1)
    body_w, body_h = 150 * scale, step * 0.72
    x_mid = 300 * scale

    def center(t: float) -> tuple[float, float, float]:
        """Centre and tilt along a lordotic curve: the middle of the lumbar spine lies most to the front."""
        x = x_mid - 42 * scale * math.sin(math.pi * t)
        y = top + t * (bottom - top)
        dxdt = -42 * scale * math.pi * math.cos(math.pi * t)
        return x, y, math.atan2(dxdt, bottom - top) * -1.0

    # Head arrow and orientation words.
    draw.line([(x_mid + 10 * scale, 44 * scale), (x_mid + 10 * scale, 18 * scale)], fill=INK,
              width=max(2, int(3 * scale)))
    draw.polygon([(x_mid + 10 * scale, 8 * scale), (x_mid, 28 * scale), (x_mid + 20 * scale, 28 * scale)], fill=INK)
    draw.text((x_mid + 26 * scale, 22 * scale), head_label, fill=INK, font=small_font, anchor="lm")
    draw.text((8 * scale, 64 * scale), "\u2190 " + front_label, fill=INK, font=small_font, anchor="lm")
    draw.text((width - 8 * scale, 64 * scale), back_label + " \u2192", fill=INK, font=small_font, anchor="rm")

    label_rows: list[tuple[str, float, float, bool]] = []
    for i, name in enumerate(lumbar):
        t = (i + 0.5) / n
        cx, cy, ang = center(t)
        is_treated = name.upper() in treated_set
        fill, edge = (TREATED_FILL, TREATED_EDGE) if is_treated else (BONE_FILL, BONE_EDGE)
        # Disc above (except for the first bone).
        if i > 0:
            tx, ty, tang = center(i / n)
            draw.polygon(_rounded_polygon(_rotated_rect(tx, ty, body_w * 0.94, step * 0.2, tang), 8 * scale),
                         fill=DISC_FILL, outline=(90, 130, 170))
        # Back part of the bone: pedicle and spinous process, to the right (the back).
        c, s = math.cos(ang), math.sin(ang)

        def rot(dx: float, dy: float) -> tuple[float, float]:
            return (cx + dx * c - dy * s, cy + dx * s + dy * c)

        arch = [rot(body_w * 0.45, -body_h * 0.28), rot(body_w * 0.9, -body_h * 0.22),
                rot(body_w * 1.05, -body_h * 0.05),
                rot(body_w * 1.32, body_h * 0.12), rot(body_w * 1.28, body_h * 0.36), rot(body_w * 1.0, body_h * 0.3),
                rot(body_w * 0.78, body_h * 0.18), rot(body_w * 0.45, body_h * 0.1)]
        draw.polygon(arch, fill=fill, outline=edge)
        draw.polygon(_rounded_polygon(_rotated_rect(cx, cy, body_w, body_h, ang), 14 * scale), fill=fill,
                     outline=edge, width=max(2, int(3 * scale)))
        label_rows.append((name, cx - body_w / 2, cy, is_treated))

    # Sacrum: a wedge below the last disc; its top bone is S1.
    if "S1" in levels:
        tx, ty, tang = center(1.0)
        draw.polygon(_rounded_polygon(_rotated_rect(tx + 8 * scale, ty + step * 0.02, body_w * 0.94, step * 0.2,
                                                    tang + 0.25), 8 * scale), fill=DISC_FILL, outline=(90, 130, 170))
        is_treated = "S1" in treated_set
        fill, edge = (TREATED_FILL, TREATED_EDGE) if is_treated else (BONE_FILL, BONE_EDGE)
        sx, sy = tx + 30 * scale, ty + step * 0.55
        ang = tang + 0.45
        c, s = math.cos(ang), math.sin(ang)

        def srot(dx: float, dy: float) -> tuple[float, float]:
            return (sx + dx * c - dy * s, sy + dx * s + dy * c)

        sacrum = [srot(-body_w * 0.55, -body_h * 0.45), srot(body_w * 0.75, -body_h * 0.6),
                  srot(body_w * 0.55, body_h * 1.4), srot(body_w * 0.05, body_h * 2.3),
                  srot(-body_w * 0.25, body_h * 1.2)]
        draw.polygon(_rounded_polygon(sacrum, 16 * scale), fill=fill, outline=edge, width=max(2, int(3 * scale)))
        label_rows.append(("S1", sx - body_w * 0.55, sy - body_h * 0.2, is_treated))

    for name, x_left, y, is_treated in label_rows:
        draw.text((x_left - 14 * scale, y), name, fill=TREATED_EDGE if is_treated else INK, font=label_font,
                  anchor="rm")
    # The "to be treated" labels on the back side, with a pointer to the bone.
    for name, x_left, y, is_treated in label_rows:
        if not is_treated:
            continue
        x_text = width - 10 * scale
        draw.line([(x_left + body_w * 0.55, y), (x_text - draw.textlength(treated_label, font=small_font) - 10 * scale,
                                                  y + 30 * scale)], fill=TREATED_EDGE, width=max(2, int(2 * scale)))
        draw.text((x_text, y + 30 * scale), treated_label, fill=TREATED_EDGE, font=small_font, anchor="rm")
    return img


def levels_to_draw(level_names: Iterable[str]) -> tuple[str, ...]:
    """L1-L5 and S1, plus L6 when the plan has a transitional level."""
    names = set(level_names)
    base = ["L1", "L2", "L3", "L4", "L5"]
    if "L6" in names:
        base.append("L6")
    return tuple(base + ["S1"])
