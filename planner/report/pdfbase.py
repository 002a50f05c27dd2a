"""Shared fpdf2 set-up for the plan summary and the patient sheet: Unicode fonts, colours, helpers."""

from __future__ import annotations

import io
from typing import Optional

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image

from planner.report.fonts import dejavu_paths

FONT = "DejaVu"

#: RGB colours of the documents.
INK = (30, 34, 40)
MUTED = (95, 100, 110)
RULE = (200, 204, 210)
ACCENT = (20, 80, 140)
PALE = (236, 241, 247)
STATUS_COLORS = {
    "pass": (22, 128, 60),
    "warning": (196, 120, 0),
    "fail": (190, 30, 30),
    # a safety check not measured on the images (planner.checks UNVERIFIED): amber, blocks like a failure
    "unverified": (214, 150, 0),
    "not evaluated": (110, 110, 110),
    "info": (20, 80, 140),
    # eligibility words (planner.eligibility)
    "met": (22, 128, 60),
    "not met": (190, 30, 30),
    "unanswered": (196, 120, 0),
    "not applicable": (110, 110, 110),
    "eligible": (22, 128, 60),
    "not eligible": (190, 30, 30),
    "incomplete": (196, 120, 0),
    "pending": (110, 110, 110),
}


def status_color(status: str) -> tuple[int, int, int]:
    return STATUS_COLORS.get(status, STATUS_COLORS["not evaluated"])


class BasePDF(FPDF):
    """A4 portrait, millimetres, DejaVu Sans registered in regular, bold, italic and bold italic."""

    def __init__(self) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        paths = dejavu_paths()
        for style, path in paths.items():
            self.add_font(FONT, style, str(path))
        self.set_font(FONT, "", 10)
        self.set_text_color(*INK)
        self.set_creator("BVN Planner")
        self.set_lang("en")

    # ------------------------------------------------------------------ helpers
    def ln_mm(self, h: float) -> None:
        self.ln(h)

    def text_line(self, text: str, size: float, style: str = "", color: tuple[int, int, int] = INK,
                  h: Optional[float] = None, align: str = "L") -> None:
        self.set_font(FONT, style, size)
        self.set_text_color(*color)
        self.multi_cell(0, h or size * 0.5, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)

    def image_fit(self, img: Image.Image, x: float, y: float, w: float, h: Optional[float] = None) -> float:
        """Place a PIL image at (x, y) with width ``w`` (keeping its aspect); returns the height used."""
        ratio = img.height / img.width
        height = w * ratio if h is None else h
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        buf.seek(0)
        self.image(buf, x=x, y=y, w=w, h=height)
        return height
