"""The patient explanation sheet: plain-language texts from ``resources/sheet/<lang>.json``,
personalised from the plan (name, the bones to be treated and what the MRI showed there), the clinic's
contact details, and a drawing of the spine with the treated bones marked.

``build_sheet_data(plan, lang)`` fills the templates; :func:`render_sheet_pdf` and
:func:`render_sheet_html` lay them out; :func:`running_text` gives the text a reading-grade formula
should score (headings, questions and labels removed, as domain.md section 7 advises), and
:func:`measure_readability` scores it with textstat.

The sheet shows no coordinates or measurements; only the plan's levels and findings.
"""

from __future__ import annotations

import json
import os
import string
import zipfile
from dataclasses import dataclass, field
from datetime import date as Date
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from PIL import Image

from planner.logsafe import data_dir
from planner.plan import Plan
from planner.report.data import format_person_name_natural
from planner.report.spine_drawing import draw_lumbar_spine, levels_to_draw
from planner.settings import LEVEL_ORDER

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "sheet"
LANGUAGES = ("en", "es")
#: Where the clinic's contact details are read from unless a file is given.
CLINIC_FILE_NAME = "clinic.json"


class SheetTextError(ValueError):
    pass


@lru_cache(maxsize=8)
def _load_texts(lang: str) -> dict[str, Any]:
    path = RESOURCES / f"{lang}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SheetTextError(f"no patient sheet texts for language {lang!r} ({path.name} is missing)") from None
    except json.JSONDecodeError as exc:
        raise SheetTextError(f"the sheet texts {path.name} are damaged: line {exc.lineno}: {exc.msg}") from None


def load_texts(lang: str) -> dict[str, Any]:
    if lang not in LANGUAGES:
        raise SheetTextError(f"language {lang!r} is not available; choose one of {', '.join(LANGUAGES)}")
    return _load_texts(lang)


# ------------------------------------------------------------------------------------ clinic
@dataclass
class ClinicInfo:
    """Contact details printed on the sheet. Empty fields get the language's neutral wording."""

    name: str = ""
    phone: str = ""
    after_hours_phone: str = ""
    doctor: str = ""

    @classmethod
    def load(cls, path: Optional[os.PathLike | str] = None) -> "ClinicInfo":
        """Read a JSON file {"name", "phone", "after_hours_phone", "doctor"}; by default the one in the
        application's data folder (``clinic.json``), if it exists. Raises ValueError with a clear
        message for a damaged file that was named explicitly."""
        p = Path(path) if path is not None else data_dir() / CLINIC_FILE_NAME
        if not p.is_file():
            if path is not None:
                raise ValueError(f"clinic file {p} does not exist")
            return cls()
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"clinic file {p.name} cannot be read: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"clinic file {p.name} must hold a JSON object")
        known = {k: str(v) for k, v in raw.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)

    def merged(self, **overrides: Optional[str]) -> "ClinicInfo":
        values = {k: getattr(self, k) for k in self.__dataclass_fields__}
        values.update({k: v for k, v in overrides.items() if v})
        return ClinicInfo(**values)


# ------------------------------------------------------------------------------------ data
@dataclass
class SheetSection:
    id: str
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    qa: list[tuple[str, str]] = field(default_factory=list)
    urgent: str = ""
    personal: bool = False
    #: Paragraphs shown after the bullets.
    after: list[str] = field(default_factory=list)


@dataclass
class SheetData:
    lang: str
    title: str
    for_patient: str
    prepared: str
    other_name: str
    words: dict[str, str]
    sections: list[SheetSection]
    glossary: list[tuple[str, str]]
    treated_levels: list[str]
    level_lines: list[str]
    levels_text: str
    clinic: ClinicInfo
    clinic_lines: list[tuple[str, str]]
    spine_image: Image.Image
    spine_alt: str
    patient_name: str


class _Strict(dict):
    def __missing__(self, key: str) -> str:
        raise SheetTextError(f"the sheet texts use an unknown placeholder {{{key}}}")


def _fill(template: str, values: dict[str, str]) -> str:
    return string.Formatter().vformat(template, (), _Strict(values))


def join_words(items: list[str], and_word: str) -> str:
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" {and_word} " + items[-1]


def _format_date(d: Date, texts: dict[str, Any]) -> str:
    months = texts["words"].get("months")
    if months and len(months) == 12:
        return texts["words"].get("date_format", "{day} {month} {year}").format(
            day=d.day, month=months[d.month - 1], year=d.year)
    return d.isoformat()


def _level_sort_key(name: str) -> int:
    return LEVEL_ORDER.index(name) if name in LEVEL_ORDER else len(LEVEL_ORDER)


def build_sheet_data(plan: Plan, lang: str = "en", clinic: Optional[ClinicInfo] = None,
                     on_date: Optional[Date] = None) -> SheetData:
    texts = load_texts(lang)
    words: dict[str, str] = {k: v for k, v in texts["words"].items() if isinstance(v, str)}
    defaults = texts["defaults"]
    clinic = clinic or ClinicInfo()
    treated = sorted({lv.name for lv in plan.levels if lv.treat}, key=_level_sort_key)
    levels_text = join_words(treated, words["and"])
    st = plan.settings
    low, high = (list(st.procedure_duration_min) + [0.0, 0.0])[:2]
    values = {
        "patient_name": format_person_name_natural(plan.case.patient_name),
        "levels": levels_text,
        "bone_word": words["bone_one"] if len(treated) == 1 else words["bone_many"],
        "clinic_name": clinic.name or defaults["clinic_name"],
        "clinic_phone": clinic.phone or defaults["clinic_phone"],
        "after_hours_phone": clinic.after_hours_phone or defaults["after_hours_phone"],
        "clinic_phone_phrase": (words["phone_phrase"].format(phone=clinic.phone) if clinic.phone
                                else defaults["clinic_phone_phrase"]),
        "after_hours_phrase": (words["after_hours_phrase"].format(phone=clinic.after_hours_phone)
                               if clinic.after_hours_phone else defaults["after_hours_phrase"]),
        "date": _format_date(on_date or Date.today(), texts),
        # durations come from the plan's settings (domain.md 4), never from the text
        "rf_minutes": words["minutes"].format(n=f"{st.rf_duration_min:g}"),
        "procedure_time": (words["minutes_range"].format(low=f"{low:g}", high=f"{high:g}") if high > low
                           else words["minutes"].format(n=f"{low:g}")),
    }
    sections = []
    for sec in texts["sections"]:
        paragraphs = sec.get("paragraphs", [])
        if sec.get("personal") and not treated:
            paragraphs = sec.get("paragraphs_none", paragraphs)
        sections.append(SheetSection(
            sec["id"], _fill(sec["heading"], values), [_fill(p, values) for p in paragraphs],
            [_fill(b, values) for b in sec.get("bullets", [])],
            [(_fill(q["q"], values), _fill(q["a"], values)) for q in sec.get("qa", [])],
            _fill(sec.get("urgent", ""), values), bool(sec.get("personal")),
            [_fill(p, values) for p in sec.get("paragraphs_after", [])]))
    level_lines = []
    for lv in sorted((lv for lv in plan.levels if lv.treat), key=lambda lv: _level_sort_key(lv.name)):
        found = False
        for which in ("superior", "inferior"):
            f = getattr(lv, which)
            if f.modic_type != "none" and f.modic_type in texts["modic_words"]:
                level_lines.append(_fill(texts["level_finding"], {
                    "level": lv.name, "change": texts["modic_words"][f.modic_type],
                    "edge": texts["edge_words"][which]}))
                found = True
        if not found:
            level_lines.append(_fill(texts["level_no_finding"], {"level": lv.name}))
    patient_name = values["patient_name"]
    for_patient = _fill(texts["for_patient"], values) if patient_name else texts.get("for_patient_unnamed", "")
    spine = draw_lumbar_spine(treated, levels=levels_to_draw(lv.name for lv in plan.levels),
                              treated_label=words["treated"], front_label=words["front"], back_label=words["back"],
                              head_label=words["head"], width=640)
    clinic_lines = [(words["clinic"], values["clinic_name"]), (words["phone"], values["clinic_phone"]),
                    (words["after_hours"], values["after_hours_phone"])]
    if clinic.doctor:
        clinic_lines.insert(0, (words["your_doctor"], clinic.doctor))
    return SheetData(
        lang=lang, title=texts["title"], for_patient=for_patient, prepared=_fill(texts["prepared"], values),
        other_name=texts.get("other_name", ""), words=words, sections=sections,
        glossary=[(g["term"], g["text"]) for g in texts["glossary"]], treated_levels=treated,
        level_lines=level_lines, levels_text=levels_text, clinic=clinic, clinic_lines=clinic_lines,
        spine_image=spine, spine_alt=_fill(words["spine_alt"], {"levels": levels_text or "-"}),
        patient_name=patient_name)


# ------------------------------------------------------------------------------------ readability
def _sentence(text: str) -> str:
    text = text.strip()
    return text if text[-1:] in ".!?" else text + "."


def running_text(data: SheetData) -> str:
    """The sheet's running text for a readability formula: paragraphs, bullets (full sentences),
    answers, the personal level lines and the glossary explanations. Left out: the title, headings,
    questions, glossary terms, labels and contact details (domain.md 7: remove headings, bullet
    fragments and non-terminal full stops before scoring)."""
    parts: list[str] = []
    for sec in data.sections:
        parts += sec.paragraphs
        if sec.personal:
            parts += data.level_lines
        parts += sec.bullets
        parts += sec.after
        parts += [a for _, a in sec.qa]
        if sec.urgent:
            parts.append(sec.urgent)
    parts += [text for _, text in data.glossary]
    return " ".join(_sentence(p) for p in parts if p.strip())


@dataclass
class Readability:
    lang: str
    sentences: int
    words: int
    flesch_kincaid_grade: float
    smog_index: float
    flesch_reading_ease: float
    #: Spanish only: Fernandez-Huerta reading ease (higher is easier; 70-80 "fairly easy").
    fernandez_huerta: Optional[float] = None
    #: Spanish only: Szigriszt-Pazos perspicuity (INFLESZ scale: 55-65 "normal", 65-80 "fairly easy").
    szigriszt_pazos: Optional[float] = None


_CMUDICT_ZIP = RESOURCES / "nltk_data" / "corpora" / "cmudict.zip"


def _ensure_cmudict() -> None:
    """textstat counts English syllables with the CMU Pronouncing Dictionary through nltk, which would
    try to download it. The project ships it (resources/sheet/nltk_data, BSD licence; see
    resources/sheet/README.md); it is unpacked once into the application's data folder, where nltk
    finds it, so scoring works offline and never reaches for the network."""
    import nltk

    try:
        nltk.data.find("corpora/cmudict")
        return
    except LookupError:
        pass
    root = data_dir() / "nltk_data"
    corpus = root / "corpora" / "cmudict" / "cmudict"
    if not corpus.is_file():
        with zipfile.ZipFile(_CMUDICT_ZIP) as z:
            z.extractall(root / "corpora")
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    nltk.data.find("corpora/cmudict")  # LookupError here means the shipped copy is missing


def measure_readability(text: str, lang: str = "en") -> Readability:
    from textstat.textstat import textstatistics

    ts = textstatistics()
    if lang == "en":
        _ensure_cmudict()
        ts.set_lang("en_US")
    else:
        ts.set_lang(lang)
    r = Readability(lang, int(ts.sentence_count(text)), int(ts.lexicon_count(text)),
                    float(ts.flesch_kincaid_grade(text)), float(ts.smog_index(text)),
                    float(ts.flesch_reading_ease(text)))
    if lang == "es":
        r.fernandez_huerta = float(ts.fernandez_huerta(text))
        r.szigriszt_pazos = float(ts.szigriszt_pazos(text))
    return r
