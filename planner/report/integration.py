"""Adapters to the feature modules the documents read: eligibility and the trajectory checks.

The documents show the results of :func:`planner.eligibility.evaluate_eligibility` and
:func:`planner.checks.evaluate_trajectory`; they never compute clinical results themselves. When a
module is missing from this build the section is marked as pending instead.

Results are read by attribute or key name so that small changes of those modules' result types do
not break the documents (e.g. ``status``/``result``, ``reason``/``message``, ``source``).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from planner.plan import Plan, Trajectory

#: Canonical check statuses shown in the documents.
STATUS_WORDS = {
    "pass": "pass", "passed": "pass", "ok": "pass", "good": "pass", "true": "pass",
    "warn": "warning", "warning": "warning", "caution": "warning",
    "fail": "fail", "failed": "fail", "error": "fail", "false": "fail",
    "na": "not evaluated", "n/a": "not evaluated", "unknown": "not evaluated", "skipped": "not evaluated",
    "not_evaluated": "not evaluated", "not evaluated": "not evaluated", "missing": "not evaluated",
    "pending": "not evaluated", "info": "info",
}


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict):
            if n in obj:
                return obj[n]
        elif hasattr(obj, n):
            value = getattr(obj, n)
            if not callable(value):
                return value
    return default


def normalise_status(value: Any) -> str:
    if value is None:
        return "not evaluated"
    if isinstance(value, bool):
        return "pass" if value else "fail"
    raw = getattr(value, "value", value)
    text = str(raw).strip().lower()
    if "." in text and text.split(".")[0] in ("status", "checkstatus"):
        text = text.split(".", 1)[1]
    return STATUS_WORDS.get(text, text or "not evaluated")


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


#: How units are printed in the documents.
UNIT_SYMBOLS = {"deg": "°", "degC": "°C"}


def format_value(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        text = f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        text = "(" + ", ".join(f"{float(v):.1f}" for v in value) + ")"
    else:
        text = str(value)
    unit = UNIT_SYMBOLS.get(unit, unit)
    if unit == "°":
        return f"{text}°"
    return f"{text} {unit}".strip() if unit else text


# ----------------------------------------------------------------------------------------- rows
@dataclass
class CheckRow:
    name: str
    status: str  # "pass", "warning", "fail", "not evaluated", "info"
    reason: str = ""
    source: str = ""
    value: str = ""


@dataclass
class MetricRow:
    label: str
    value: str
    note: str = ""


@dataclass
class TrajectoryEvaluation:
    metrics: list[MetricRow] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)
    #: Overall status of the trajectory ("pass", "warning", "fail" or "not evaluated").
    overall: str = "not evaluated"
    #: Why the evaluation is incomplete (module missing, landmarks missing, ...), if it is.
    note: str = ""


@dataclass
class EligibilityRow:
    item: str
    answer: str
    status: str  # as planner.eligibility words it: "met", "not met", "unanswered", "not applicable"
    reason: str = ""
    source: str = ""
    group: str = ""
    rule: str = ""


@dataclass
class EligibilityResult:
    status: str  # "eligible", "not eligible", "incomplete" or "pending"
    summary: str
    rows: list[EligibilityRow] = field(default_factory=list)
    pending: bool = False
    warnings: list[str] = field(default_factory=list)
    not_applicable: int = 0


# ----------------------------------------------------------------------------------- checks
def _check_rows(items: Iterable[Any]) -> list[CheckRow]:
    rows = []
    for it in items:
        name = _get(it, "label", "title", "name", "key", "id", default="check")
        status = normalise_status(_get(it, "status", "result", "level", "severity", "passed", "ok"))
        reason = _get(it, "reason", "message", "explanation", "detail", "text", default="") or ""
        source = _get(it, "source", "reference", "basis", default="") or ""
        value = _get(it, "value_text", "value", "measured", default=None)
        unit = _get(it, "unit", default="") or ""
        rows.append(CheckRow(str(name), status, str(reason), str(source),
                             format_value(value, unit) if value is not None else ""))
    return rows


def _metric_rows(metrics: Any) -> list[MetricRow]:
    rows: list[MetricRow] = []
    if metrics is None:
        return rows
    if hasattr(metrics, "model_dump"):
        metrics = metrics.model_dump()
    elif hasattr(metrics, "__dataclass_fields__"):
        metrics = {k: getattr(metrics, k) for k in metrics.__dataclass_fields__}
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            if isinstance(value, dict) and ("value" in value or "label" in value):
                rows.append(MetricRow(str(value.get("label", key)), format_value(value.get("value"),
                                                                                  value.get("unit", "")),
                                      str(value.get("note", ""))))
            else:
                unit = "mm" if key.endswith("_mm") else "deg" if key.endswith("_deg") else "%" if key.endswith(
                    "_pct") else ""
                label = key
                for suffix in ("_mm", "_deg", "_pct", "_lps"):
                    if label.endswith(suffix):
                        label = label[: -len(suffix)]
                rows.append(MetricRow(label.replace("_", " ").capitalize(), format_value(value, unit)))
        return rows
    for it in metrics:
        label = _get(it, "label", "name", "key", default="metric")
        rows.append(MetricRow(str(label), format_value(_get(it, "value"), _get(it, "unit", default="") or ""),
                              str(_get(it, "note", "source", default="") or "")))
    return rows


def overall_status(statuses: Iterable[str]) -> str:
    statuses = list(statuses)
    if "fail" in statuses:
        return "fail"
    if "warning" in statuses:
        return "warning"
    if statuses and all(s in ("pass", "info") for s in statuses):
        return "pass"
    return "not evaluated"


def evaluate_trajectory(plan: Plan, traj: Trajectory, images: Any = None) -> TrajectoryEvaluation:
    mod = _module("planner.checks")
    fn = getattr(mod, "evaluate_trajectory", None) if mod else None
    if fn is None:
        return TrajectoryEvaluation(note="Safety checks are not available in this build; the trajectory has not "
                                         "been checked.")
    result = None
    for args in ((plan, traj, images), (plan, traj), (plan, traj.id)):
        try:
            result = fn(*args)
            break
        except TypeError:
            continue
    if result is None:
        return TrajectoryEvaluation(note="The safety checks could not be run for this trajectory.")
    checks = _check_rows(_get(result, "checks", "results", default=[]) or [])
    metrics = _metric_rows(_get(result, "metrics", "measurements", default=None))
    overall = normalise_status(_get(result, "overall", "status", default=None))
    if overall == "not evaluated":
        overall = overall_status(c.status for c in checks)
    note = str(_get(result, "note", "notes", default="") or "")
    return TrajectoryEvaluation(metrics, checks, overall, note)


# ------------------------------------------------------------------------------ eligibility
def _answer_text(value: Any) -> str:
    if value is None:
        return "not answered"
    return format_value(value)


_ACRONYMS = {"odi": "ODI", "vas": "VAS", "nrs": "NRS", "mri": "MRI", "ct": "CT", "bmi": "BMI"}


def _key_label(key: str) -> str:
    words = key.replace("_", " ").split()
    words = [_ACRONYMS.get(w.lower(), w) for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def evaluate_eligibility(plan: Plan) -> EligibilityResult:
    """The result of :func:`planner.eligibility.evaluate_eligibility`, as rows for the documents."""
    mod = _module("planner.eligibility")
    fn = getattr(mod, "evaluate_eligibility", None) if mod else None
    if fn is None:
        rows = [EligibilityRow(_key_label(key), _answer_text(value), "not evaluated")
                for key, value in plan.eligibility.answers.items()]
        summary = ("Pending: the eligibility evaluation is not available in this build. The checklist answers "
                   "are listed as recorded, without a result.")
        if not rows:
            summary += " No answers have been recorded."
        return EligibilityResult("pending", summary, rows, pending=True)
    data = fn(plan).to_dict()
    rows = []
    skipped = 0
    for it in data["items"]:
        if it["status"] == "not applicable":
            skipped += 1
            continue
        rows.append(EligibilityRow(it["question"], _answer_text(it["answer"]) if it["answer"] is not None else "-",
                                   it["status"], it.get("detail", ""), it.get("source", ""), it.get("group", ""),
                                   it.get("rule", "")))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {word}" for word, n in counts.items())
    if skipped:
        summary += f"; {skipped} payer items not applicable to the selected payer profile"
    warnings = [w["message"] + (f" ({w['source']})" if w.get("source") else "") for w in data.get("warnings", [])]
    return EligibilityResult(data["overall"], summary + ".", rows, False, warnings, skipped)
