"""Series panel: the loaded series grouped under their patient and study, with the role each has in
the plan. Double-click (or Enter) shows a series in the views.

A window holds one patient (one plan, one case): the tree has one patient, whose studies hold the
series. It shows the session, never edits the plan.
"""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from planner.document import Part, PlanChange
from planner.imaging.volume import ProjectionImage
from planner.session import Session, patient_identity
from planner.views.panel import PlanPanel
from planner.display.roles import modality_text, role_of

#: Item data role holding the series key of a series row.
KEY_ROLE = Qt.ItemDataRole.UserRole


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


class SeriesPanel(PlanPanel):
    """Patient > study > series of the loaded images (see the module text)."""

    #: The user asked to see a series (its key).
    series_activated = Signal(str)

    def __init__(self, session: Session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.deidentified = False
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("seriesTree")
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Patient / study / series", "Modality", "Images", "Role"])
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.setToolTip("The series of this plan's patient. Double-click a series (or press Enter) to show it.")
        self.tree.itemActivated.connect(self._activated)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.note.setObjectName("seriesNote")
        lay = QVBoxLayout(self)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.note)
        self.subscribe(session.images_changed, self._on_images)
        self.subscribe(session.document.changed, self._on_plan)
        self.refresh()

    # ------------------------------------------------------------------ model -> view
    def _on_images(self, _key: str) -> None:
        self.refresh_when_visible()

    def _on_plan(self, change: PlanChange) -> None:
        if change.touches(Part.CASE):
            self.refresh_when_visible()

    def set_deidentified(self, on: bool) -> None:
        if on != self.deidentified:
            self.deidentified = on
            self.refresh()

    def patient_text(self, info: Any) -> str:
        if self.deidentified:
            return "Patient (de-identified display)"
        name = (info.patient_name or "").replace("^", " ").strip() or "No patient name"
        pid = f"ID {info.patient_id}" if info.patient_id else "no patient ID"
        birth = f"born {_date(info.patient_birth_date)}" if info.patient_birth_date else ""
        return ", ".join(x for x in (name, pid, birth) if x)

    @staticmethod
    def study_text(info: Any) -> str:
        bits = [_date(info.study_date) or "no study date", info.study_description or "",
                f"accession {info.accession_number}" if info.accession_number else ""]
        return "Study " + ", ".join(b for b in bits if b)

    def refresh(self) -> None:
        if self.closed:
            return
        self.tree.clear()
        patients: dict[tuple, QTreeWidgetItem] = {}
        studies: dict[tuple, QTreeWidgetItem] = {}
        for key, img in self.session.images.items():
            info = img.info
            pkey = patient_identity(info) or ("unidentified",)
            top = patients.get(pkey)
            if top is None:
                top = QTreeWidgetItem([self.patient_text(info), "", "", ""])
                f = top.font(0)
                f.setBold(True)
                top.setFont(0, f)
                self.tree.addTopLevelItem(top)
                patients[pkey] = top
            skey = (pkey, info.study_instance_uid or "", info.study_date, info.study_description)
            study = studies.get(skey)
            if study is None:
                study = QTreeWidgetItem([self.study_text(info), "", "", ""])
                study.setToolTip(0, f"Study Instance UID {info.study_instance_uid or '(none)'}")
                top.addChild(study)
                studies[skey] = study
            n = img.n_frames if isinstance(img, ProjectionImage) else img.shape_ijk[2]
            unit = "frames" if isinstance(img, ProjectionImage) else "slices"
            se = f"Se {info.series_number}: " if info.series_number is not None else ""
            row = QTreeWidgetItem([f"{se}{info.series_description or '(no description)'}", modality_text(img),
                                   f"{n} {unit}", role_of(self.session, key)])
            row.setData(0, KEY_ROLE, key)
            row.setToolTip(0, f"Series Instance UID {key}\nDouble-click to show it")
            if modality_text(img).startswith("CT (by"):
                row.setToolTip(1, "No modality in the file: the values are Hounsfield units (air at about -1000, "
                                  "or fat below -100 in a crop), so the planner treats it as CT (CT windows, 3D "
                                  "presets and checks)")
            study.addChild(row)
        self.tree.expandAll()
        for c in (1, 2, 3):
            self.tree.resizeColumnToContents(c)
        n_series = len(self.session.images)
        if not n_series:
            self.note.setText("No images open: File > Open folder (Ctrl+O), or drop a folder on the window.")
        else:
            self.note.setText(f"{n_series} series of one patient. Images of another patient open in a window of "
                              "their own (one plan holds one patient).")

    def series_keys(self) -> list[str]:
        """The keys of the series rows in display order (tests and keyboard use)."""
        out = []
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            for j in range(top.childCount()):
                study = top.child(j)
                out += [study.child(k).data(0, KEY_ROLE) for k in range(study.childCount())]
        return out

    # ------------------------------------------------------------------ view -> window
    def _activated(self, item: QTreeWidgetItem, _col: int = 0) -> None:
        key = item.data(0, KEY_ROLE)
        if key:
            self.series_activated.emit(str(key))



__all__ = ["SeriesPanel"]
