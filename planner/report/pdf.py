"""The plan summary PDF (fpdf2): lays out a :class:`~planner.report.data.ReportData`.

Every page carries the planning-aid statement under the header and "Page X of Y", the generation
date and the application version in the footer.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional, Sequence

from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace

from planner.report.data import Field, ReportData, TrajectorySection
from planner.report.keyimages import INSTRUMENT_COLORS, ZONE_COLOR
from planner.report.pdfbase import ACCENT, FONT, INK, MUTED, PALE, RULE, BasePDF, status_color

#: Font sizes of the plan summary (points). The summary is for clinicians; the patient sheet uses
#: larger type (planner.report.sheet).
BODY_PT = 9.5
SMALL_PT = 8.0
H1_PT = 16.0
H2_PT = 12.5
H3_PT = 10.5
#: JPEG quality of the key images in the summary (technical).
KEY_IMAGE_JPEG_QUALITY = 90


class ReportPDF(BasePDF):
    def __init__(self, data: ReportData) -> None:
        super().__init__()
        self.data = data
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=18)
        self.set_title(data.title)
        self.set_subject("Planning aid, not for navigation")
        self.set_author(data.app_name)

    def image_fit(self, img, x: float, y: float, w: float, h: Optional[float] = None) -> float:  # type: ignore[override]
        """Key images as JPEG (quality ``KEY_IMAGE_JPEG_QUALITY``): grey-scale pictures with coloured
        drawings, encoded about ten times faster than an optimised PNG."""
        height = w * img.height / img.width if h is None else h
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=KEY_IMAGE_JPEG_QUALITY, subsampling=0)
        buf.seek(0)
        self.image(buf, x=x, y=y, w=w, h=height)
        return height

    def header(self) -> None:
        d = self.data
        self.set_y(8)
        self.set_font(FONT, "B", 9)
        self.set_text_color(*ACCENT)
        self.cell(90, 5, f"{d.app_name} · {d.title}", new_x=XPos.RIGHT, new_y=YPos.TOP)
        self.set_font(FONT, "", 9)
        self.set_text_color(*INK)
        ident = d.patient_display_name or "Unnamed patient"
        pid = next((f.value for f in d.patient if f.label == "Patient ID"), "")
        if pid and pid != "-":
            ident += f" · ID {pid}"
        self.cell(0, 5, ident, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        # The planning-aid statement, on every page.
        self.set_fill_color(253, 236, 200)
        self.set_draw_color(196, 120, 0)
        self.set_font(FONT, "B", 8.5)
        self.set_text_color(120, 60, 0)
        self.cell(0, 6, d.statement, border=1, align="C", fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self.set_draw_color(*RULE)
        self.ln(3)

    def footer(self) -> None:
        d = self.data
        self.set_y(-13)
        self.set_draw_color(*RULE)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*MUTED)
        self.cell(0, 6, f"Generated {d.generated_at} by {d.app_name} {d.app_version} · plan {d.plan_id}",
                  new_x=XPos.LMARGIN, new_y=YPos.TOP)
        self.cell(0, 6, f"Page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(*INK)

    # --------------------------------------------------------------------------- blocks
    def h1(self, text: str) -> None:
        self.text_line(text, H1_PT, "B", ACCENT, h=8)
        self.ln(1)

    def h2(self, text: str, *, new_page_if_below: float = 40) -> None:
        if self.will_page_break(new_page_if_below):
            self.add_page()
        self.ln(2)
        self.set_font(FONT, "B", H2_PT)
        self.set_text_color(*ACCENT)
        self.multi_cell(0, 7, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(*ACCENT)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.set_text_color(*INK)
        self.ln(2)

    def h3(self, text: str) -> None:
        if self.will_page_break(20):
            self.add_page()
        self.set_font(FONT, "B", H3_PT)
        self.multi_cell(0, 6, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def para(self, text: str, size: float = BODY_PT, style: str = "", color=INK) -> None:
        self.text_line(text, size, style, color, h=size * 0.48)

    def badge(self, text: str, status: str) -> None:
        self.set_font(FONT, "B", BODY_PT)
        self.set_fill_color(*status_color(status))
        self.set_text_color(255, 255, 255)
        w = self.get_string_width(text) + 6
        self.cell(w, 6, text, align="C", fill=True, new_x=XPos.RIGHT, new_y=YPos.TOP)
        self.set_text_color(*INK)
        self.set_fill_color(255, 255, 255)

    def field_grid(self, fields: Sequence[Field], columns: int = 2, label_w: float = 28) -> None:
        col_w = (self.w - self.l_margin - self.r_margin) / columns
        self.set_fill_color(*PALE)
        rows = [fields[i:i + columns] for i in range(0, len(fields), columns)]
        for row in rows:
            self.set_font(FONT, "", BODY_PT)
            needed = max(self.multi_cell(col_w - label_w - 2, 5.5, f.value, dry_run=True, output="HEIGHT")
                         for f in row)
            if self.will_page_break(needed):
                self.add_page()
            y = self.get_y()
            bottom = y + 5.5
            for c, f in enumerate(row):
                x = self.l_margin + c * col_w
                self.set_xy(x, y)
                self.set_font(FONT, "B", BODY_PT)
                self.cell(label_w, 5.5, f.label, fill=True, new_x=XPos.RIGHT, new_y=YPos.TOP)
                self.set_font(FONT, "", BODY_PT)
                self.set_xy(x + label_w + 1, y)
                self.multi_cell(col_w - label_w - 2, 5.5, f.value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
                bottom = max(bottom, self.get_y())
            self.set_xy(self.l_margin, bottom + 0.8)

    def table(self, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("line_height", BODY_PT * 0.5)
        kwargs.setdefault("text_align", "LEFT")
        kwargs.setdefault("headings_style", FontFace(emphasis="BOLD", fill_color=PALE))
        kwargs.setdefault("padding", 0.8)
        kwargs.setdefault("borders_layout", "HORIZONTAL_LINES")
        kwargs.setdefault("cell_fill_color", (247, 249, 252))
        kwargs.setdefault("cell_fill_mode", "ROWS")
        self.set_fill_color(255, 255, 255)
        self.set_font(FONT, "", kwargs.pop("font_size", BODY_PT))
        self.set_text_color(*INK)
        self.set_draw_color(*RULE)
        return super().table(*args, **kwargs)

    def status_cell(self, row, status: str) -> None:
        row.cell(status.upper(), style=FontFace(emphasis="BOLD", color=status_color(status)))


def _page1(pdf: ReportPDF, d: ReportData) -> None:
    """The overview: who, what study, the eligibility verdict, the findings, the trajectories at a glance."""
    pdf.h1(d.title)
    pdf.set_font(FONT, "", BODY_PT)
    pdf.set_text_color(*MUTED)
    author = f"Planned by {d.plan_author}" if d.plan_author else "Planner not recorded"
    pdf.cell(0, 5, f"{author} · last changed {d.plan_modified[:16].replace('T', ' ')} · review: {d.review.state}",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.ln(1)
    pdf.field_grid(d.patient)
    pdf.field_grid(d.study[:4])
    if d.series:
        pdf.para("Series used: " + "; ".join(f"{f.label} {f.value}" for f in d.series), SMALL_PT, "", MUTED)
    pdf.h2("Eligibility", new_page_if_below=30)
    _eligibility_verdict(pdf, d)
    _levels(pdf, d)
    pdf.h2("Trajectories", new_page_if_below=30)
    treated = [lv.name for lv in d.levels if lv.treat]
    pdf.para(f"Levels to treat: {', '.join(treated) if treated else 'none marked'}. "
             f"Trajectories: {len(d.trajectories)}. One page of plan per treated level follows; the details are in "
             "the appendix.")
    for t in d.trajectories:
        pdf.set_x(pdf.l_margin + 2)
        pdf.badge(t.overall.upper(), t.overall)
        pdf.set_font(FONT, "", BODY_PT)
        text = f"  {t.title}" + ("  (override reason recorded)" if t.override_reason else "")
        pdf.multi_cell(0, 6, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)
    for note in d.notes:
        pdf.para(note, SMALL_PT, "I", MUTED)


#: PDF colours of the eligibility colours (planner.eligibility RED/AMBER/GREEN/GREY).
ELIGIBILITY_RGB = {"red": status_color("fail"), "amber": status_color("warning"), "green": status_color("pass"),
                   "grey": status_color("not evaluated")}


def _eligibility_verdict(pdf: ReportPDF, d: ReportData) -> None:
    """The verdict badge in the colour of the result and the lines that say which class decided it."""
    e = d.eligibility
    rgb = ELIGIBILITY_RGB[e.colour]
    pdf.set_font(FONT, "B", BODY_PT)
    pdf.set_fill_color(*rgb)
    pdf.set_text_color(255, 255, 255)
    text = f"ELIGIBILITY: {e.overall.upper()}"
    pdf.cell(pdf.get_string_width(text) + 6, 6, text, align="C", fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.set_fill_color(255, 255, 255)
    pdf.ln(1)
    lines = e.verdict_lines()
    pdf.para(lines[0], BODY_PT, "B", rgb)
    for line in lines[1:]:
        pdf.para("\u2022 " + line, BODY_PT, "", ELIGIBILITY_RGB["amber"])
    for w in e.warnings:
        if w.group != "payer_rule":  # payer rules not met are in the verdict lines
            pdf.para(f"Warning: {w.message} ({w.source})", SMALL_PT, "B", status_color("warning"))


def _answer_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _eligibility(pdf: ReportPDF, d: ReportData) -> None:
    """The whole checklist, grouped by criterion class (FDA indication, device contraindication, clinic
    pages, trial criterion, payer rule), each group saying what "not met" means for it."""
    from planner.eligibility import CLASSES, NOT_APPLICABLE

    e = d.eligibility
    pdf.h2("Eligibility checklist by source")
    _eligibility_verdict(pdf, d)
    for group, rows in e.by_group().items():
        rows = [r for r in rows if r.status != NOT_APPLICABLE]
        if not rows:
            continue
        cls = CLASSES[group]
        effect = f"not met: {cls.consequence}" if cls.decides else f"{cls.consequence}; does not decide"
        pdf.set_font(FONT, "B", SMALL_PT + 0.5)
        pdf.multi_cell(0, 4.2, f"{e.class_title(group)} ({effect})", align="L", new_x=XPos.LMARGIN,
                       new_y=YPos.NEXT)
        pdf.para(cls.basis, SMALL_PT - 1, "I", MUTED)
        with pdf.table(col_widths=(74, 14, 30, 62), font_size=SMALL_PT - 1, line_height=(SMALL_PT - 1) * 0.44,
                       padding=0.4) as table:
            table.row(["Criterion", "Answer", "Result", "Detail"])
            for r in rows:
                row = table.row()
                row.cell(r.item.question)
                row.cell(_answer_text(r.answer))
                row.cell(r.outcome.upper(), style=FontFace(emphasis="BOLD", color=ELIGIBILITY_RGB[r.colour]))
                row.cell(r.detail + (f" (rule: {r.item.rule})" if r.item.rule and r.status != "met" else ""))
        pdf.ln(1)
    n_na = e.counts()[NOT_APPLICABLE]
    if n_na:
        pdf.para(f"{n_na} payer items belong to another payer profile and are not listed. Sources of each "
                 "criterion are in the eligibility panel; thresholds are the plan's settings (appendix).",
                 SMALL_PT, "I", MUTED)


def _levels(pdf: ReportPDF, d: ReportData) -> None:
    """Endplates with a Modic change (or waiting for a decision) in a table; the normal ones in one line."""
    pdf.h2("Levels and Modic findings", new_page_if_below=30)
    if not d.levels:
        pdf.para("No levels have been labelled.")
        return
    rows = [(lv, ep) for lv in d.levels for ep in lv.endplates
            if ep.modic_type != "none" or ep.status == "suggestion, not confirmed"]
    if rows:
        with pdf.table(col_widths=(16, 14, 22, 20, 14, 14, 80)) as table:
            table.row(["Level", "Treat", "Endplate", "Modic", "Grade", "Share", "Finding status"])
            for lv, ep in rows:
                row = table.row()
                row.cell(lv.name, style=FontFace(emphasis="BOLD"))
                row.cell("yes" if lv.treat else "no", style=FontFace(emphasis="BOLD" if lv.treat else None))
                row.cell(ep.which)
                row.cell(ep.modic_type)
                row.cell(ep.grade)
                row.cell(ep.share)
                row.cell(ep.status)
    pdf.ln(1)
    pdf.para(f"No Modic change: {d.normal_endplates or 'none'}.", BODY_PT)
    extra = [lv for lv in d.levels if lv.notes or lv.prior_ablation or not lv.landmarks_complete]
    for lv in extra:
        bits = []
        if lv.prior_ablation:
            bits.append("prior ablation of this vertebral body recorded")
        if not lv.landmarks_complete:
            bits.append("landmarks incomplete")
        if lv.notes:
            bits.append(f"note: {lv.notes}")
        pdf.para(f"{lv.name}: " + "; ".join(bits), SMALL_PT, "", MUTED)
    if any(ep.suggestion for lv in d.levels for ep in lv.endplates):
        pdf.para("The Modic assistant's measurements are in the appendix.", SMALL_PT, "I", MUTED)


def _legend(pdf: ReportPDF) -> None:
    pdf.set_font(FONT, "", SMALL_PT)
    items = [(n, c) for n, c in INSTRUMENT_COLORS.items()] + [("ablation zone", ZONE_COLOR),
                                                                ("active tip", (255, 40, 40))]
    for name, color in items:
        pdf.set_fill_color(*color)
        pdf.cell(3.5, 3.5, "", fill=True, new_x=XPos.RIGHT, new_y=YPos.TOP)
        pdf.cell(pdf.get_string_width(name) + 5, 3.5, " " + name, new_x=XPos.RIGHT, new_y=YPos.TOP)
    pdf.ln(5)


#: Short names of the key images on a level page.
KIND_WORDS = {"sagittal": "Sagittal", "axial": "Axial", "3d": "3D", "fluoro": "C-arm", "virtual": "Virtual"}


def _short_caption(key) -> str:
    words = KIND_WORDS.get(key.kind, key.kind)
    if key.kind == "fluoro":
        words = key.caption.split(":")[0]
    elif key.kind == "virtual":
        words = "Virtual " + ("AP" if " AP " in key.caption else "lateral") + " (not a C-arm image)"
    elif key.short_caption:
        words = key.short_caption
    return words


#: Width of a key image on a level page (mm): six fit on the page with the trajectory's table.
LEVEL_IMAGE_MM = 50.0
#: A level page whose text runs over (long reasons, two trajectories) has its key images drawn smaller, by
#: these factors in turn, so that it keeps to one page where it can (a last line alone on a page of its own).
LEVEL_IMAGE_SHRINK = (1.0, 0.85, 0.72)


def _image_grid(pdf: ReportPDF, images: Sequence, columns: int = 3, gap: float = 3.0, scale: float = 1.0) -> None:
    col_w = scale * min(LEVEL_IMAGE_MM, (pdf.w - pdf.l_margin - pdf.r_margin - gap * (columns - 1)) / columns)
    for i in range(0, len(images), columns):
        row = images[i:i + columns]
        heights = [col_w * img.image.height / img.image.width for img in row]
        if pdf.will_page_break(max(heights) + 6):
            pdf.add_page()
        y = pdf.get_y()
        bottom = y
        for c, key in enumerate(row):
            x = pdf.l_margin + c * (col_w + gap)
            h = pdf.image_fit(key.image, x, y, col_w)
            pdf.set_xy(x, y + h + 0.4)
            pdf.set_font(FONT, "", SMALL_PT - 0.5)
            pdf.multi_cell(col_w, 3.2, _short_caption(key), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            bottom = max(bottom, pdf.get_y())
        pdf.set_y(bottom + 1.5)


def _checks_compact(pdf: ReportPDF, t: TrajectorySection) -> None:
    """The checks that do not pass, with value, limit and why; the passing ones in one line with their values.
    Every check's reason and source is in the appendix."""
    if t.checks_note:
        pdf.para(t.checks_note, SMALL_PT, "I", MUTED)
    if not t.checks:
        return
    open_ = [c for c in t.checks if c.status != "pass"]
    if open_:
        with pdf.table(col_widths=(40, 22, 24, 20, 74), font_size=SMALL_PT, line_height=SMALL_PT * 0.46) as table:
            table.row(["Check", "Status", "Value", "Limit", "Why"])
            for c in open_:
                row = table.row()
                row.cell(c.name)
                pdf.status_cell(row, c.status)
                row.cell(c.value)
                row.cell(c.limit)
                row.cell(c.reason)
    passed = [c for c in t.checks if c.status == "pass"]
    if passed:
        pdf.para("Passed: " + "; ".join(c.summary for c in passed) + ".", SMALL_PT - 0.5,
                 "", status_color("pass"))


class _LayoutTrial(ReportPDF):
    """The report's layout without its pictures (only their size), never written: where a level page's
    content would end at a given picture size. Trying on the report itself would copy the whole document
    and encode its pictures for each try."""

    def image_fit(self, img, x: float, y: float, w: float, h: Optional[float] = None) -> float:  # type: ignore[override]
        return w * img.height / img.width if h is None else h


def _level_page(pdf: ReportPDF, page, scratch: _LayoutTrial) -> None:
    """One level on one page where it fits with its key images at one of ``LEVEL_IMAGE_SHRINK``'s sizes (tried
    on ``scratch``)."""
    scale = LEVEL_IMAGE_SHRINK[-1]
    for s in LEVEL_IMAGE_SHRINK[:-1]:
        scratch.add_page()
        first = scratch.page
        _level_content(scratch, page, s)
        if scratch.page == first:
            scale = s
            break
    pdf.add_page()
    _level_content(pdf, page, scale)


def _level_content(pdf: ReportPDF, page, scale: float) -> None:
    pdf.h2(f"{page.name}: plan for the procedure room")
    pdf.para(f"{page.name}: {page.finding}.", BODY_PT)
    if page.key_images:
        _legend(pdf)
        _image_grid(pdf, page.key_images, scale=scale)
    for t in page.trajectories:
        if pdf.will_page_break(40):
            pdf.add_page()
        pdf.set_font(FONT, "B", H3_PT)
        pdf.badge(t.overall.upper(), t.overall)
        pdf.set_font(FONT, "B", H3_PT)
        pdf.cell(0, 6, f"  Trajectory {t.level_name} {t.side}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if t.label:
            pdf.para(t.label, SMALL_PT, "I", MUTED)
        pdf.ln(0.5)
        if t.override_reason:
            pdf.para(f"Override reason recorded by the physician: {t.override_reason}", BODY_PT, "B",
                     status_color("fail"))
        pdf.field_grid(t.procedure, columns=1, label_w=38)
        if t.depth_margin:
            pdf.para(t.depth_margin + ".", SMALL_PT + 0.5)
        if t.depth_margin_conflict:
            pdf.para(t.depth_margin_conflict, SMALL_PT, "", status_color("warning"))
        pdf.ln(0.5)
        _checks_compact(pdf, t)
        pdf.ln(1.5)


def _trajectory_details(pdf: ReportPDF, t: TrajectorySection) -> None:
    """Appendix: coordinates, every metric, every check with its reason and source, comments, image notes."""
    if pdf.will_page_break(50):
        pdf.add_page()
    pdf.h3(f"Trajectory {t.title}")
    pdf.field_grid(t.points, columns=1, label_w=42)
    pdf.para("Coordinates in patient LPS millimetres (x to the patient's left, y posterior, z superior).",
             SMALL_PT - 0.5, "I", MUTED)
    if t.metrics:
        cells = [(m.label, m.value + (f" ({m.note})" if m.note else "")) for m in t.metrics]
        if len(cells) % 2:
            cells.append(("", ""))
        half = len(cells) // 2
        with pdf.table(col_widths=(52, 38, 52, 38), font_size=SMALL_PT - 0.5,
                       line_height=(SMALL_PT - 0.5) * 0.46) as table:
            table.row(["Measure", "Value", "Measure", "Value"])
            for (l1, v1), (l2, v2) in zip(cells[:half], cells[half:]):
                table.row([l1, v1, l2, v2])
    if t.checks:
        pdf.ln(1)
        with pdf.table(col_widths=(38, 18, 124), font_size=SMALL_PT - 0.5,
                       line_height=(SMALL_PT - 0.5) * 0.46) as table:
            table.row(["Check", "Status", "Reason and source"])
            for c in t.checks:
                row = table.row()
                row.cell(c.name)
                pdf.status_cell(row, c.status)
                row.cell(" ".join(x for x in (c.reason, f"Source: {c.source}." if c.source else "") if x))
    for cm in t.comments:
        pdf.para(f"Comment, {cm.author} ({cm.created[:16].replace('T', ' ')}): {cm.text}", SMALL_PT)
    for note in t.image_notes:
        pdf.para(note, SMALL_PT - 0.5, "I", MUTED)
    pdf.ln(1)


def _modic_details(pdf: ReportPDF, d: ReportData) -> None:
    rows = [(lv.name, ep) for lv in d.levels for ep in lv.endplates if ep.suggestion and
            (ep.modic_type != "none" or "type none" not in ep.suggestion)]
    if not rows:
        return
    pdf.h2("Modic assistant measurements", new_page_if_below=30)
    for name, ep in rows:
        pdf.para(f"{name} {ep.which}: {ep.suggestion}", SMALL_PT - 0.5)
    pdf.para("Endplates where the assistant found no change are listed on page 1 and need no confirmation.",
             SMALL_PT - 0.5, "I", MUTED)


def _settings(pdf: ReportPDF, d: ReportData) -> None:
    pdf.h2("Device settings used")
    pdf.para("Values saved with this plan. RF settings are shown for the record only; no geometry depends on them. "
             "Tags: [C] confirmed in the cited source, [S] secondary source, [U] unconfirmed, design = product "
             "choice.", SMALL_PT, "", MUTED)
    with pdf.table(col_widths=(62, 58, 16, 44)) as table:
        table.row(["Setting", "Value", "Tag", "Note"])
        for r in d.device_settings:
            notes = []
            if r.display_only:
                notes.append("display only")
            if r.changed:
                notes.append("changed from default")
            row = table.row()
            row.cell(r.label)
            row.cell(f"{r.value} {r.unit}".strip())
            row.cell(r.tag)
            row.cell(", ".join(notes), style=FontFace(emphasis="BOLD") if r.changed else None)


def _review(pdf: ReportPDF, d: ReportData) -> None:
    pdf.h2("Review")
    status = {"signed off": "pass", "sign-off out of date": "warning"}.get(d.review.state, "not evaluated")
    pdf.badge(d.review.state.upper(), status)
    pdf.ln(8)
    if d.review.signoffs:
        for s in d.review.signoffs:
            pdf.para(s.text, BODY_PT, "B" if s.current else "", INK if s.current else status_color("warning"))
    else:
        pdf.para("No reviewer has signed this plan.")
    pdf.ln(1)
    pdf.h3("Comments")
    if not d.review.comments:
        pdf.para("No comments.")
    else:
        with pdf.table(col_widths=(34, 34, 28, 84)) as table:
            table.row(["On", "Author", "When", "Comment"])
            for c in d.review.comments:
                table.row([c.anchor, c.author, c.created[:16].replace("T", " "), c.text])


def _appendix(pdf: ReportPDF, d: ReportData) -> None:
    pdf.h2("All thresholds used, with sources", new_page_if_below=40)
    pdf.para("Values saved with this plan. Tags: [C] confirmed in the cited source, [S] secondary source, [U] "
             "unconfirmed, design = product choice; a table with rows of another tag names them. RF settings are "
             "for the record only; no geometry depends on them.", SMALL_PT - 0.5, "", MUTED)
    with pdf.table(col_widths=(38, 36, 16, 90), line_height=2.6, font_size=6.0, padding=0.4) as table:
        table.row(["Setting", "Value", "Tag", "Source"])
        for r in d.all_settings:
            notes = [x for x in ("changed" if r.changed else "",
                                 "display only" if r.display_only and "display only" not in r.label else "") if x]
            table.row([r.label + (f" ({', '.join(notes)})" if notes else ""), f"{r.value} {r.unit}".strip(), r.tag,
                       r.source])


def _build(data: ReportData) -> ReportPDF:
    pdf = ReportPDF(data)
    pdf.add_page()
    _page1(pdf, data)
    scratch = _LayoutTrial(data)
    for page in data.level_pages:
        _level_page(pdf, page, scratch)
    pdf.add_page()
    pdf.h1("Appendix: details")
    _eligibility(pdf, data)
    _modic_details(pdf, data)
    if data.trajectories:
        pdf.h2("Trajectories: coordinates, metrics and checks with their sources", new_page_if_below=40)
        for t in data.trajectories:
            _trajectory_details(pdf, t)
    _review(pdf, data)
    _appendix(pdf, data)
    return pdf


def render_report_pdf(data: ReportData, path: os.PathLike | str) -> Path:
    """Write the plan summary PDF to ``path`` (atomically: a temporary file renamed over it)."""
    return write_pdf_atomic(_build(data), path)


def report_pdf_bytes(data: ReportData) -> bytes:
    """The plan summary PDF as bytes (for the DICOM Encapsulated PDF)."""
    return bytes(_build(data).output())


def write_pdf_atomic(pdf: BasePDF, path: os.PathLike | str) -> Path:
    """Write ``pdf`` through an unpredictable, exclusive temporary file renamed over ``path``
    (:func:`planner.safefiles.atomic_write_bytes`: a planted symlink is never followed)."""
    from planner.safefiles import atomic_write_bytes

    return atomic_write_bytes(path, bytes(pdf.output()))
