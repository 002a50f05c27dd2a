"""Logging without patient identifiers.

Logs go to stderr (warnings and up) and to a rotating file in the user's data folder. Patient
names, IDs and birth dates are registered with :func:`register_identifiers` when a study is
loaded; a filter replaces them (and their parts) with "[redacted]" in every record, as a second
line of defence: code must not log identifiers in the first place.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
import threading
from pathlib import Path
from typing import Iterable, Optional

_lock = threading.Lock()
_identifiers: set[str] = set()
_pattern: Optional[re.Pattern[str]] = None
REDACTED = "[redacted]"


def register_identifiers(values: Iterable[object]) -> None:
    """Add patient identifiers (name, ID, birth date, ...) that must never reach a log."""
    global _pattern
    with _lock:
        for v in values:
            text = str(v or "").strip()
            if not text:
                continue
            _identifiers.add(text)
            for part in re.split(r"[\^\s,]+", text):
                if len(part) >= 3:
                    _identifiers.add(part)
        if _identifiers:
            alts = sorted(_identifiers, key=len, reverse=True)
            # also inside longer words (a folder "SmithJohn" must not pass): over-redaction is the safe side
            _pattern = re.compile("|".join(re.escape(a) for a in alts), re.IGNORECASE)


def redact(text: str) -> str:
    pat = _pattern
    return pat.sub(REDACTED, text) if pat is not None else text


class RedactingFilter(logging.Filter):
    """Redacts the message, the traceback and the stack of every record (the traceback is formatted
    here, before any handler writes it, so the exception's text is redacted too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is not None:
            try:
                msg = record.getMessage()
            except Exception:
                return True
            record.msg = redact(msg)
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        return True


class ConsoleHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (not the one of the moment the handler was made, which a
    test or an embedding program may have replaced and closed since), and leaves out the records
    marked ``extra={"console": False}``: failures the caller already told the user about in one
    sentence, whose details belong in the log file only."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the stream is always the current sys.stderr
        pass

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True) is not False and super().filter(record)


class ConsoleFormatter(logging.Formatter):
    """One line per record on the console: tracebacks go to the log file only, never to the user."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        return text.splitlines()[0] if text else text


def data_dir() -> Path:
    base = os.environ.get("BVN_PLANNER_HOME")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_DATA_HOME")
    return Path(xdg) / "bvn-planner" if xdg else Path.home() / ".local" / "share" / "bvn-planner"


def log_file_path() -> Path:
    return data_dir() / "logs" / "bvn-planner.log"


def setup_logging(level: int = logging.INFO, to_file: bool = True) -> None:
    root = logging.getLogger()
    if getattr(root, "_bvn_configured", False):
        return
    root.setLevel(level)
    # a log that cannot be written (full disk, a removed folder) must not print a traceback to the user
    # (the Python documentation's advice for programs in production)
    logging.raiseExceptions = False
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    flt = RedactingFilter()
    console = ConsoleHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(ConsoleFormatter("%(levelname)s %(name)s: %(message)s"))
    console.addFilter(flt)
    root.addHandler(console)
    if to_file:
        try:
            path = log_file_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
            fh.setFormatter(fmt)
            fh.addFilter(flt)
            root.addHandler(fh)
        except OSError:
            pass
    root._bvn_configured = True  # type: ignore[attr-defined]
