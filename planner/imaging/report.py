"""The import report: for every file, whether it was loaded (into which image) or skipped and why;
general notes; per-series warnings; whether the import was cancelled.

It holds no patient identifiers (file names, UIDs and technical reasons only), so it can be logged and
shown in full.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

LOADED = "loaded"
SKIPPED = "skipped"


@dataclass
class FileEntry:
    #: the file path, or ``archive.zip!member``
    name: str
    #: "loaded" or "skipped"
    status: str
    #: for a skipped file: why; for a loaded file: what it became (e.g. "slice 12 of CT ...")
    reason: str = ""
    #: key of the image the file went into (loaded files)
    series_key: Optional[str] = None


@dataclass
class ImportReport:
    files: dict[str, FileEntry] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    series_warnings: dict[str, list[str]] = field(default_factory=dict)
    cancelled: bool = False
    elapsed_s: float = 0.0

    # ---------------------------------------------------------------- recording
    def loaded(self, name: str, series_key: str, what: str = "") -> None:
        self.files[name] = FileEntry(name, LOADED, what, series_key)

    def skipped(self, name: str, reason: str) -> None:
        """Record a skipped file. A file already reported as skipped keeps its first reason."""
        old = self.files.get(name)
        if old is not None and old.status == SKIPPED:
            return
        self.files[name] = FileEntry(name, SKIPPED, reason or "unknown reason", None)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # ---------------------------------------------------------------- reading
    @property
    def loaded_files(self) -> list[FileEntry]:
        return [e for e in self.files.values() if e.status == LOADED]

    @property
    def skipped_files(self) -> list[FileEntry]:
        return [e for e in self.files.values() if e.status == SKIPPED]

    def reason(self, name: str) -> Optional[str]:
        e = self.files.get(name)
        return e.reason if e is not None else None

    def summary(self) -> str:
        """One line, e.g. "99 files loaded, 1 skipped (3 series)"."""
        n_series = len({e.series_key for e in self.loaded_files})
        text = (f"{len(self.loaded_files)} file(s) loaded into {n_series} image(s), "
                f"{len(self.skipped_files)} skipped")
        if self.cancelled:
            text += "; import cancelled"
        return text

    def to_text(self, max_files: int = 200) -> str:
        lines = [self.summary()]
        lines += [f"note: {n}" for n in self.notes]
        for key, ws in self.series_warnings.items():
            lines += [f"warning [{key}]: {w}" for w in ws]
        skipped = self.skipped_files
        for e in skipped[:max_files]:
            lines.append(f"skipped: {e.name}: {e.reason}")
        if len(skipped) > max_files:
            lines.append(f"... and {len(skipped) - max_files} more skipped files")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "cancelled": self.cancelled,
            "elapsed_s": round(self.elapsed_s, 3),
            "notes": list(self.notes),
            "series_warnings": {k: list(v) for k, v in self.series_warnings.items()},
            "files": [asdict(e) for e in self.files.values()],
        }
