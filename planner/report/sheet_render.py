"""Lay out the patient sheet as PDF (fpdf2) and as a self-contained HTML page.

Type sizes follow plain-language guidance for print (domain.md 7): body text at least 12 pt
(``SHEET_BODY_PT``); only the footer (page numbers) is smaller.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

from fpdf.enums import XPos, YPos

from planner.report.pdf import write_pdf_atomic
from planner.report.pdfbase import ACCENT, FONT, INK, MUTED, PALE, BasePDF
from planner.report.sheet import SheetData

#: Smallest type of the sheet's running text, in points; every text block uses at least this.
SHEET_MIN_BODY_PT = 12.0
SHEET_BODY_PT = 12.5
SHEET_LINE_MM = 6.4
SHEET_H1_PT = 21.0
SHEET_H2_PT = 16.0
SHEET_QUESTION_PT = 13.0
SHEET_FOOTER_PT = 9.0
PAGE_MARGIN_MM = 18.0
URGENT_RED = (170, 20, 20)
TREATED_ORANGE = (242, 140, 40)



class SheetPDF(BasePDF):
    def __init__(self, data: SheetData) -> None:
        super().__init__()
        self.data = data
        self.set_lang(data.lang)
        self.set_margins(PAGE_MARGIN_MM, 16, PAGE_MARGIN_MM)
        self.set_auto_page_break(auto=True, margin=20)
        self.set_title(data.title)
        self.set_author(data.clinic_lines[0][1] if data.clinic_lines else "")

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_y(8)
        self.set_font(FONT, "", SHEET_FOOTER_PT)
        self.set_text_color(*MUTED)
        self.cell(0, 5, self.data.title, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self.set_y(16)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(FONT, "", SHEET_FOOTER_PT)
        self.set_text_color(*MUTED)
        width = self.w - 2 * PAGE_MARGIN_MM  # fixed, whatever the body's margins are at the moment
        self.set_x(PAGE_MARGIN_MM)
        self.cell(width, 6, self.data.patient_name, new_x=XPos.LEFT, new_y=YPos.TOP)
        self.cell(width, 6, self.data.words["page"].format(page=self.page_no(), pages="{nb}"), align="R")
        self.set_text_color(*INK)

    # ------------------------------------------------------------------ blocks
    def body(self, text: str, style: str = "", color=INK, size: float = SHEET_BODY_PT) -> None:
        self.set_font(FONT, style, size)
        self.set_text_color(*color)
        self.multi_cell(0, SHEET_LINE_MM, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self.ln(1.8)

    def heading(self, text: str) -> None:
        if self.will_page_break(30):
            self.add_page()
        self.ln(2.5)
        y = self.get_y()
        self.set_fill_color(*ACCENT)
        self.rect(self.l_margin, y + 1, 2.2, 8, style="F")
        self.set_x(self.l_margin + 5)
        self.set_font(FONT, "B", SHEET_H2_PT)
        self.set_text_color(*ACCENT)
        self.multi_cell(0, 9, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self.ln(1)

    def bullets(self, items: list[str], mark: str = "\u2022", color=INK) -> None:
        indent = 7
        for item in items:
            if self.will_page_break(SHEET_LINE_MM * 2):
                self.add_page()
            self.set_font(FONT, "B", SHEET_BODY_PT)
            self.set_text_color(*ACCENT)
            y = self.get_y()
            self.cell(indent, SHEET_LINE_MM, mark, align="C", new_x=XPos.RIGHT, new_y=YPos.TOP)
            self.set_font(FONT, "", SHEET_BODY_PT)
            self.set_text_color(*color)
            self.set_xy(self.l_margin + indent, y)
            self.multi_cell(self.w - self.r_margin - self.l_margin - indent, SHEET_LINE_MM, item, align="L",
                            new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.ln(1.2)
        self.set_text_color(*INK)
        self.ln(1)


def _title_block(pdf: SheetPDF, d: SheetData) -> None:
    pdf.set_fill_color(*PALE)
    pdf.rect(0, 0, pdf.w, 44, style="F")
    pdf.set_y(12)
    pdf.set_font(FONT, "B", SHEET_H1_PT)
    pdf.set_text_color(*ACCENT)
    pdf.multi_cell(0, 10, d.title, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "B", 14)
    pdf.set_text_color(*INK)
    if d.for_patient:
        pdf.cell(0, 8, d.for_patient, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", SHEET_BODY_PT)
    pdf.set_text_color(*MUTED)
    pdf.cell(0, 6.5, d.other_name, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    pdf.set_y(max(pdf.get_y(), 44) + 4)
    pdf.body(d.prepared, "I", MUTED)


def _why_section(pdf: SheetPDF, d: SheetData, sec) -> None:
    """The personal section: the text (levels box and why) beside the spine drawing, then the level
    lines at full width. Moved to a new page as a whole when the side-by-side part would not fit."""
    img_w = 68.0
    img_h = img_w * d.spine_image.height / d.spine_image.width
    gap = 5.0
    text_w = pdf.w - pdf.l_margin - pdf.r_margin - img_w - gap
    pdf.set_font(FONT, "I", SHEET_MIN_BODY_PT)
    caption_h = pdf.multi_cell(img_w, 5.4, d.words["spine_caption"], dry_run=True, output="HEIGHT")
    pdf.set_font(FONT, "", SHEET_BODY_PT)
    text_h = sum(pdf.multi_cell(text_w, SHEET_LINE_MM, p, dry_run=True, output="HEIGHT") + 1.8
                 for p in sec.paragraphs) + (20 if d.treated_levels else 0)
    if pdf.will_page_break(14 + max(img_h + caption_h + 2, text_h)):
        pdf.add_page()
    pdf.heading(sec.heading)
    y0 = pdf.get_y()
    x_img = pdf.w - pdf.r_margin - img_w
    pdf.image_fit(d.spine_image, x_img, y0, img_w)
    pdf.set_xy(x_img, y0 + img_h + 1)
    pdf.set_font(FONT, "I", SHEET_MIN_BODY_PT)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(img_w, 5.4, d.words["spine_caption"], align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    bottom_img = pdf.get_y()
    pdf.set_text_color(*INK)
    old_r = pdf.r_margin
    pdf.set_right_margin(pdf.w - x_img + gap)
    pdf.set_xy(pdf.l_margin, y0)
    if d.treated_levels:
        pdf.set_fill_color(253, 236, 214)
        pdf.set_draw_color(*TREATED_ORANGE)
        pdf.set_font(FONT, "B", SHEET_QUESTION_PT)
        pdf.multi_cell(0, 7.5, f"{d.words['planned_levels']}: {d.levels_text}", border=1, fill=True, align="L",
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT, padding=2)
        pdf.ln(2.5)
    for p in sec.paragraphs:
        pdf.body(p)
    pdf.set_right_margin(old_r)
    pdf.set_y(max(pdf.get_y(), bottom_img) + 2)
    if d.level_lines:
        pdf.bullets(d.level_lines, mark="\u25b6", color=INK)


def _contact_box(pdf: SheetPDF, d: SheetData) -> None:
    if pdf.will_page_break(58):
        pdf.add_page()
    pdf.ln(2)
    y0 = pdf.get_y()
    x0 = pdf.l_margin
    w = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.set_xy(x0 + 4, y0 + 3)
    pdf.set_font(FONT, "B", SHEET_QUESTION_PT)
    pdf.set_text_color(*ACCENT)
    pdf.cell(0, 7, d.words["contact_box"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    rows = list(d.clinic_lines) + [(d.words["procedure_date"], ""), (d.words["arrive_time"], "")]
    for label, value in rows:
        pdf.set_x(x0 + 4)
        pdf.set_font(FONT, "B", SHEET_BODY_PT)
        pdf.cell(64, 7.5, label + ":", new_x=XPos.RIGHT, new_y=YPos.TOP)
        pdf.set_font(FONT, "", SHEET_BODY_PT)
        if value:
            pdf.multi_cell(w - 72, 7.5, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        else:  # a line to write on
            y = pdf.get_y() + 6.5
            pdf.set_draw_color(*MUTED)
            pdf.line(pdf.get_x(), y, x0 + w - 6, y)
            pdf.ln(8.5)
    pdf.set_x(x0 + 4)
    pdf.set_font(FONT, "B", SHEET_BODY_PT)
    pdf.set_text_color(*URGENT_RED)
    pdf.multi_cell(w - 8, SHEET_LINE_MM, d.words["emergency"], align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*INK)
    y1 = pdf.get_y() + 3
    pdf.set_draw_color(*ACCENT)
    pdf.set_line_width(0.6)
    pdf.rect(x0, y0, w, y1 - y0)
    pdf.set_line_width(0.2)
    pdf.set_y(y1 + 3)


def _build_pdf(d: SheetData) -> SheetPDF:
    pdf = SheetPDF(d)
    pdf.add_page()
    _title_block(pdf, d)
    for sec in d.sections:
        if sec.personal:
            _why_section(pdf, d, sec)
            continue
        pdf.heading(sec.heading)
        for p in sec.paragraphs:
            pdf.body(p)
        if sec.bullets:
            pdf.bullets(sec.bullets)
        for p in sec.after:
            pdf.body(p)
        for q, a in sec.qa:
            if pdf.will_page_break(24):
                pdf.add_page()
            pdf.set_font(FONT, "B", SHEET_QUESTION_PT)
            pdf.multi_cell(0, 7, q, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.body(a)
        if sec.urgent:
            pdf.set_fill_color(252, 232, 232)
            pdf.set_draw_color(*URGENT_RED)
            pdf.set_font(FONT, "B", SHEET_BODY_PT)
            pdf.set_text_color(*URGENT_RED)
            pdf.multi_cell(0, SHEET_LINE_MM, sec.urgent, border=1, fill=True, align="L", padding=2.5,
                           new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_text_color(*INK)
            pdf.ln(2)
        if sec.id == "call":
            _contact_box(pdf, d)
    pdf.heading(d.words["glossary"])
    for term, text in d.glossary:
        if pdf.will_page_break(14):
            pdf.add_page()
        pdf.set_font(FONT, "B", SHEET_BODY_PT)
        pdf.multi_cell(0, SHEET_LINE_MM, term, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_x(pdf.l_margin + 6)
        pdf.set_font(FONT, "", SHEET_BODY_PT)
        pdf.multi_cell(0, SHEET_LINE_MM, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1.5)
    return pdf


def render_sheet_pdf(data: SheetData, path: os.PathLike | str) -> Path:
    return write_pdf_atomic(_build_pdf(data), path)


# ------------------------------------------------------------------------------------ HTML
_CSS = """
:root { --accent: #14508c; --muted: #5f646e; --orange: #f28c28; --red: #aa1414; }
html { font-size: 17px; }  /* 17 px = 12.75 pt; body text never below 12 pt */
body { font-family: "DejaVu Sans", Verdana, Arial, sans-serif; color: #1e2228; line-height: 1.55;
       max-width: 46rem; margin: 0 auto; padding: 1.5rem; }
header { background: #ecf1f7; padding: 1.2rem 1.5rem; border-radius: 6px; }
h1 { color: var(--accent); font-size: 1.65rem; margin: 0 0 .4rem; }
h2 { color: var(--accent); font-size: 1.3rem; border-left: 6px solid var(--accent); padding-left: .6rem;
     margin-top: 2rem; }
.for { font-weight: bold; font-size: 1.1rem; margin: .2rem 0; }
.muted { color: var(--muted); }
.plan { display: flex; gap: 1.5rem; align-items: flex-start; flex-wrap: wrap; }
.plan .text { flex: 1 1 20rem; }
figure { flex: 0 0 15rem; margin: 0; }
figure img { width: 15rem; height: auto; }
figcaption { font-style: italic; color: var(--muted); font-size: 1rem; }
.levels { border: 2px solid var(--orange); background: #fdecd6; padding: .5rem .8rem; font-weight: bold;
          font-size: 1.05rem; border-radius: 4px; }
.question { font-weight: bold; font-size: 1.05rem; margin-bottom: .2rem; }
.urgent { border: 2px solid var(--red); background: #fce8e8; color: var(--red); font-weight: bold;
          padding: .6rem .8rem; border-radius: 4px; }
aside.contact { border: 3px solid var(--accent); border-radius: 6px; padding: .8rem 1.2rem; margin-top: 1rem; }
aside.contact dt { font-weight: bold; float: left; width: 12rem; clear: left; }
aside.contact dd { margin-left: 12.5rem; min-height: 1.6rem; border-bottom: 1px solid #ccc; }
dl.glossary dt { font-weight: bold; margin-top: .6rem; }
dl.glossary dd { margin-left: 1.2rem; }
@media print { @page { size: A4; margin: 16mm 18mm; } body { max-width: none; padding: 0; } h2 { break-after: avoid; } }
"""


def _png_data_uri(img) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def sheet_html(d: SheetData) -> str:
    e = html.escape
    out = [f'<!DOCTYPE html>\n<html lang="{e(d.lang)}">\n<head>\n<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(d.title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>",
           f"<header>\n<h1>{e(d.title)}</h1>"]
    if d.for_patient:
        out.append(f'<p class="for">{e(d.for_patient)}</p>')
    out.append(f'<p class="muted">{e(d.other_name)}</p>\n</header>\n<main>')
    out.append(f'<p class="muted"><em>{e(d.prepared)}</em></p>')
    for sec in d.sections:
        out.append(f'<section id="{e(sec.id)}">\n<h2>{e(sec.heading)}</h2>')
        if sec.personal:
            out.append('<div class="plan"><div class="text">')
            if d.treated_levels:
                out.append(f'<p class="levels">{e(d.words["planned_levels"])}: {e(d.levels_text)}</p>')
        out += [f"<p>{e(p)}</p>" for p in sec.paragraphs]
        if sec.personal:
            if d.level_lines:
                out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in d.level_lines) + "</ul>")
            out.append(f'</div>\n<figure><img src="{_png_data_uri(d.spine_image)}" alt="{e(d.spine_alt)}">'
                       f'<figcaption>{e(d.words["spine_caption"])}</figcaption></figure></div>')
        if sec.bullets:
            out.append("<ul>" + "".join(f"<li>{e(b)}</li>" for b in sec.bullets) + "</ul>")
        out += [f"<p>{e(p)}</p>" for p in sec.after]
        for q, a in sec.qa:
            out.append(f'<p class="question">{e(q)}</p>\n<p>{e(a)}</p>')
        if sec.urgent:
            out.append(f'<p class="urgent">{e(sec.urgent)}</p>')
        if sec.id == "call":
            rows = list(d.clinic_lines) + [(d.words["procedure_date"], ""), (d.words["arrive_time"], "")]
            out.append(f'<aside class="contact"><h3>{e(d.words["contact_box"])}</h3><dl>'
                       + "".join(f"<dt>{e(k)}:</dt><dd>{e(v)}</dd>" for k, v in rows)
                       + f'</dl><p class="urgent">{e(d.words["emergency"])}</p></aside>')
        out.append("</section>")
    out.append(f'<section id="glossary">\n<h2>{e(d.words["glossary"])}</h2>\n<dl class="glossary">')
    out += [f"<dt>{e(t)}</dt><dd>{e(x)}</dd>" for t, x in d.glossary]
    out.append("</dl>\n</section>\n</main>\n</body>\n</html>\n")
    return "\n".join(out)


def render_sheet_html(data: SheetData, path: os.PathLike | str) -> Path:
    from planner.safefiles import atomic_write_text

    return atomic_write_text(path, sheet_html(data))  # exclusive temporary name, never through a symlink


def render_sheet(data: SheetData, path: os.PathLike | str) -> Path:
    """PDF or HTML by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".pdf":
        return render_sheet_pdf(data, path)
    if suffix in (".html", ".htm"):
        return render_sheet_html(data, path)
    raise ValueError(f"the sheet can be written as .pdf or .html, not {suffix or 'a file without suffix'}")
