"""PACS dialogs: configure nodes (with Test connection), search, list studies and series, retrieve
selected series into a local cache folder; and :func:`send_to_pacs` for the exports.

Every network call (:mod:`planner.imaging.pacs`) runs off the GUI thread; a retrieve shows a progress
bar and can be cancelled. Errors appear in the dialog as the message of :class:`PacsError` (which
names the node and the problem), never as a traceback.

Use from the main window::

    dlg = PacsDialog(self)
    dlg.retrieved.connect(lambda folder: self.import_paths([folder]))   # import with the importer
    dlg.show()

    # exports (e.g. after export_dicom):
    send_to_pacs(self, [result.pdf_dicom, *result.key_image_files, result.sr_file])
"""

from __future__ import annotations

import logging
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from planner.imaging import pacs
from planner.imaging.pacs import DICOMWEB, DIMSE, ENGINES, PacsError, PacsNode, RetrieveResult, StoreResult
from planner.imaging.pacs.cache import cache_root, new_cache_folder  # noqa: F401 (used by plan_images)
from planner.imaging.pacs import send_queue
from planner.imaging.pacs.plans import fetch_plan, is_plan_series
from planner.views.background import BackgroundCall  # noqa: F401 (also used by the tests)

log = logging.getLogger(__name__)

MODALITIES = ["", "MR", "CT", "XA", "RF", "DX", "CR", "MR\\CT"]
DATE_PRESETS = ["Any date", "Today", "Last 7 days", "Last 30 days", "Last 12 months"]
_ERROR_STYLE = "color: #c62828;"
_OK_STYLE = "color: #2e7d32;"


# ====================================================================== background calls
# ====================================================================== node editor
class NodeEditor(QWidget):
    """The list of PACS nodes with a form for the selected one; Save writes them to the user's settings."""

    nodes_saved = Signal()
    #: (node, elapsed seconds or None, message)
    tested = Signal(object, object, str)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.nodes: list[PacsNode] = pacs.load_nodes()
        self._call: Optional[BackgroundCall] = None
        self._cancel = threading.Event()
        self._loading = False
        outer = QHBoxLayout(self)
        left = QVBoxLayout()
        self.list = QListWidget()
        self.list.setObjectName("pacsNodeList")
        self.list.currentRowChanged.connect(self._show_node)
        left.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(self.add_node)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_node)
        row.addWidget(self.add_button)
        row.addWidget(self.remove_button)
        left.addLayout(row)
        outer.addLayout(left, 1)

        right = QVBoxLayout()
        form = QFormLayout()
        self.name_edit = QLineEdit()
        self.protocol_combo = QComboBox()
        self.protocol_combo.addItems([DIMSE, DICOMWEB])
        self.ae_edit = QLineEdit()
        self.ae_edit.setMaxLength(16)
        self.host_edit = QLineEdit()
        self.port_spin = QSpinBox()
        self.port_spin.setRange(1, 65535)
        self.calling_edit = QLineEdit()
        self.calling_edit.setMaxLength(16)
        self.method_combo = QComboBox()
        self.method_combo.addItems(["C-GET", "C-MOVE"])
        self.move_ae_edit = QLineEdit()
        self.move_ae_edit.setMaxLength(16)
        self.move_ae_edit.setPlaceholderText("same as the calling AE title")
        self.local_port_spin = QSpinBox()
        self.local_port_spin.setRange(1, 65535)
        self.timeout_spin = QDoubleSpinBox()
        self.timeout_spin.setRange(1.0, 600.0)
        self.timeout_spin.setSuffix(" s")
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.user_edit = QLineEdit()
        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self._dimse_rows = [("PACS AE title", self.ae_edit), ("Host", self.host_edit), ("Port", self.port_spin),
                            ("This workstation's AE title", self.calling_edit), ("Retrieve with", self.method_combo),
                            ("C-MOVE destination AE", self.move_ae_edit), ("C-MOVE local port", self.local_port_spin)]
        self._web_rows = [("DICOMweb URL", self.url_edit), ("User name", self.user_edit),
                          ("Password", self.password_edit)]
        form.addRow("Name", self.name_edit)
        form.addRow("Protocol", self.protocol_combo)
        for label, w in self._dimse_rows + self._web_rows:
            form.addRow(label, w)
        form.addRow("Timeout", self.timeout_spin)
        # administrator settings (issue 14 item 8)
        self.retrieve_timeout_spin = QDoubleSpinBox()
        self.retrieve_timeout_spin.setRange(1.0, 3600.0)
        self.retrieve_timeout_spin.setSuffix(" s")
        self.retrieve_timeout_spin.setToolTip("Longest wait between two images of a retrieve")
        self.pdu_spin = QSpinBox()
        self.pdu_spin.setRange(0, 1 << 30)
        self.pdu_spin.setSingleStep(16384)
        self.pdu_spin.setSpecialValueText("no limit")
        self.pdu_spin.setSuffix(" bytes")
        self.engine_combo = QComboBox()
        self.engine_combo.addItems(list(ENGINES))
        self.engine_combo.setToolTip("auto: large uncompressed series of a C-GET by DCMTK's getscu (faster), the "
                                     "rest by pynetdicom; TLS nodes always by pynetdicom")
        self.bind_edit = QLineEdit()
        self.bind_edit.setToolTip("Interface the C-MOVE receiver listens on (127.0.0.1: this computer only; "
                                  "empty: every interface)")
        self.tls_check = QCheckBox("DICOM TLS")
        self.ca_edit = QLineEdit()
        self.ca_edit.setPlaceholderText("CA certificates (PEM); empty: the system's")
        self.cert_edit = QLineEdit()
        self.cert_edit.setPlaceholderText("this workstation's certificate (PEM), if the PACS asks for one")
        self.key_edit = QLineEdit()
        self.key_edit.setPlaceholderText("its private key (PEM)")
        self.http_password_check = QCheckBox("Allow the password over plain http (this computer only)")
        self._admin_rows = [("Retrieve timeout", self.retrieve_timeout_spin), ("Largest PDU", self.pdu_spin),
                            ("Retrieve engine", self.engine_combo),
                            ("C-MOVE listens on", self.bind_edit), ("Security", self.tls_check),
                            ("CA file", self.ca_edit), ("Certificate", self.cert_edit), ("Key", self.key_edit),
                            ("Plain http", self.http_password_check)]
        for label, w in self._admin_rows:
            form.addRow(label, w)
        self.form = form
        right.addLayout(form)
        for w in (self.name_edit, self.ae_edit, self.host_edit, self.calling_edit, self.move_ae_edit, self.url_edit,
                  self.user_edit, self.password_edit, self.bind_edit, self.ca_edit, self.cert_edit, self.key_edit):
            w.textEdited.connect(self._form_changed)
        for w in (self.retrieve_timeout_spin, self.pdu_spin):
            w.valueChanged.connect(self._form_changed)
        for w in (self.tls_check, self.http_password_check):
            w.toggled.connect(self._form_changed)
        for w in (self.port_spin, self.local_port_spin):
            w.valueChanged.connect(self._form_changed)
        self.timeout_spin.valueChanged.connect(self._form_changed)
        self.protocol_combo.currentIndexChanged.connect(self._form_changed)
        self.method_combo.currentIndexChanged.connect(self._form_changed)
        self.engine_combo.currentIndexChanged.connect(self._form_changed)
        buttons = QHBoxLayout()
        self.test_button = QPushButton("Test connection")
        self.test_button.setToolTip("C-ECHO and a real C-FIND (DIMSE), or a QIDO-RS query on the study root "
                                    "(DICOMweb), with these settings")
        self.test_button.clicked.connect(self.test_connection)
        self.save_button = QPushButton("Save")
        self.save_button.clicked.connect(self.save)
        buttons.addWidget(self.test_button)
        buttons.addStretch(1)
        buttons.addWidget(self.save_button)
        right.addLayout(buttons)
        self.status = QLabel("")
        self.status.setObjectName("pacsNodeStatus")
        self.status.setWordWrap(True)
        right.addWidget(self.status)
        right.addWidget(self._build_cache_box())
        right.addStretch(1)
        outer.addLayout(right, 2)
        self._fill_list()

    def _build_cache_box(self) -> QGroupBox:
        from planner.imaging.pacs.cache import CacheSettings
        from planner.imaging.pacs.passwords import store_name

        box = QGroupBox("Retrieved images and passwords")
        form = QFormLayout(box)
        self.cache_label = QLabel(str(cache_root()))
        self.cache_label.setObjectName("pacsCacheLocation")
        self.cache_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cache_label.setWordWrap(True)
        settings = CacheSettings.load()
        self.retention_spin = QDoubleSpinBox()
        self.retention_spin.setRange(0.0, 3650.0)
        self.retention_spin.setSuffix(" days")
        self.retention_spin.setSpecialValueText("until the size limit needs the room")
        self.retention_spin.setValue(settings.retention_days)
        self.cache_size_spin = QDoubleSpinBox()
        self.cache_size_spin.setRange(0.1, 100000.0)
        self.cache_size_spin.setSuffix(" GB")
        self.cache_size_spin.setValue(settings.max_gb)
        row = QHBoxLayout()
        self.clean_button = QPushButton("Clean now")
        self.clean_button.clicked.connect(self.clean_cache)
        row.addWidget(self.clean_button)
        row.addStretch(1)
        form.addRow("Cache folder", self.cache_label)
        form.addRow("Keep retrieves for", self.retention_spin)
        form.addRow("Cache size limit", self.cache_size_spin)
        form.addRow("", row)
        self.password_store_label = QLabel(f"Passwords are kept in {store_name()}.")
        self.password_store_label.setWordWrap(True)
        form.addRow("Passwords", self.password_store_label)
        return box

    def cache_settings(self) -> Any:
        from planner.imaging.pacs.cache import CacheSettings

        return CacheSettings(retention_days=float(self.retention_spin.value()),
                             max_gb=float(self.cache_size_spin.value()))

    def clean_cache(self) -> list:
        from planner.imaging.pacs.cache import cache_size, clean_cache

        settings = self.cache_settings()
        settings.save()
        removed = clean_cache(settings)
        self._set_status(f"Removed {len(removed)} old retrieve(s); the cache holds "
                         f"{cache_size() / (1 << 20):.0f} MB.")
        return removed

    # ------------------------------------------------------------------
    def _fill_list(self, select: int = 0) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for n in self.nodes:
            self.list.addItem(QListWidgetItem(n.display_name))
        self.list.blockSignals(False)
        if self.nodes:
            self.list.setCurrentRow(min(max(select, 0), len(self.nodes) - 1))
            self._show_node(self.list.currentRow())
        else:
            self._show_node(-1)

    def current(self) -> Optional[PacsNode]:
        row = self.list.currentRow()
        return self.nodes[row] if 0 <= row < len(self.nodes) else None

    def _show_node(self, row: int) -> None:
        node = self.nodes[row] if 0 <= row < len(self.nodes) else None
        self._loading = True
        enabled = node is not None
        for w in [self.name_edit, self.protocol_combo, self.timeout_spin, self.test_button, self.remove_button] + \
                [w for _l, w in self._dimse_rows + self._web_rows + self._admin_rows]:
            w.setEnabled(enabled)
        n = node or PacsNode()
        self.name_edit.setText(n.name)
        self.protocol_combo.setCurrentText(n.protocol)
        self.ae_edit.setText(n.ae_title)
        self.host_edit.setText(n.host)
        self.port_spin.setValue(int(n.port))
        self.calling_edit.setText(n.calling_ae)
        self.method_combo.setCurrentText(n.retrieve_method if n.retrieve_method in ("C-GET", "C-MOVE") else "C-GET")
        self.move_ae_edit.setText(n.move_ae)
        self.local_port_spin.setValue(int(n.local_port))
        self.timeout_spin.setValue(float(n.timeout_s))
        self.retrieve_timeout_spin.setValue(float(n.retrieve_timeout_s))
        self.pdu_spin.setValue(int(n.max_pdu))
        self.engine_combo.setCurrentText(n.retrieve_engine if n.retrieve_engine in ENGINES else ENGINES[0])
        self.bind_edit.setText(n.local_bind)
        self.tls_check.setChecked(bool(n.tls))
        self.ca_edit.setText(n.tls_ca_file)
        self.cert_edit.setText(n.tls_cert_file)
        self.key_edit.setText(n.tls_key_file)
        self.http_password_check.setChecked(bool(n.allow_http_password))
        self.url_edit.setText(n.dicomweb_url)
        self.user_edit.setText(n.username)
        self.password_edit.setText(n.password)
        self._loading = False
        self._update_rows()

    def _update_rows(self) -> None:
        web = self.protocol_combo.currentText() == DICOMWEB
        for label, w in self._dimse_rows:
            self.form.setRowVisible(w, not web)
        for label, w in self._web_rows:
            self.form.setRowVisible(w, web)
        for w in (self.pdu_spin, self.engine_combo, self.bind_edit, self.tls_check):
            self.form.setRowVisible(w, not web)
        self.form.setRowVisible(self.http_password_check, web)
        move = self.method_combo.currentText() == "C-MOVE" and self.current() is not None
        self.move_ae_edit.setEnabled(move)
        self.local_port_spin.setEnabled(move)

    def _form_changed(self, *_args: Any) -> None:
        self._update_rows()
        if self._loading:
            return
        node = self.current()
        if node is None:
            return
        node.name = self.name_edit.text().strip()
        node.protocol = self.protocol_combo.currentText()
        node.ae_title = self.ae_edit.text().strip()
        node.host = self.host_edit.text().strip()
        node.port = self.port_spin.value()
        node.calling_ae = self.calling_edit.text().strip()
        backend = pacs.nodes.BACKENDS[node.protocol]
        method = self.method_combo.currentText()
        node.retrieve_method = method if method in backend.methods else backend.methods[0]
        node.move_ae = self.move_ae_edit.text().strip()
        node.local_port = self.local_port_spin.value()
        node.timeout_s = float(self.timeout_spin.value())
        node.retrieve_timeout_s = float(self.retrieve_timeout_spin.value())
        node.max_pdu = int(self.pdu_spin.value())
        node.retrieve_engine = self.engine_combo.currentText()
        node.local_bind = self.bind_edit.text().strip()
        node.tls = self.tls_check.isChecked()
        node.tls_ca_file = self.ca_edit.text().strip()
        node.tls_cert_file = self.cert_edit.text().strip()
        node.tls_key_file = self.key_edit.text().strip()
        node.allow_http_password = self.http_password_check.isChecked()
        node.dicomweb_url = self.url_edit.text().strip()
        node.username = self.user_edit.text()
        node.password = self.password_edit.text()
        item = self.list.item(self.list.currentRow())
        if item is not None:
            item.setText(node.display_name)

    def add_node(self) -> PacsNode:
        node = PacsNode(name="New PACS", ae_title="PACS", host="", port=104)
        self.nodes.append(node)
        self._fill_list(len(self.nodes) - 1)
        self.name_edit.setFocus()
        return node

    def remove_node(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.nodes):
            del self.nodes[row]
            self._fill_list(row - 1 if row > 0 else 0)

    def save(self) -> bool:
        problems = [f"{n.display_name}: {p}" for n in self.nodes for p in n.problems()]
        if problems:
            self._set_status("Not saved. " + " ".join(problems), error=True)
            return False
        try:
            pacs.save_nodes(self.nodes)
            self.cache_settings().save()
        except OSError as exc:
            self._set_status(f"The PACS settings could not be saved: {exc.strerror or exc}.", error=True)
            return False
        self._set_status(f"Saved {len(self.nodes)} PACS node(s).")
        self.nodes_saved.emit()
        return True

    def test_connection(self) -> Optional[BackgroundCall]:
        node = self.current()
        if node is None or (self._call is not None and not self._call.done):
            return None
        problems = node.problems()
        if problems:
            self._set_status(" ".join(problems), error=True)
            return None
        snapshot = PacsNode.from_dict(node.to_dict())
        self.test_button.setEnabled(False)
        self._set_status(f"Testing {snapshot.label}...")
        self._cancel = threading.Event()
        cancel = self._cancel
        call = BackgroundCall(lambda _p: pacs.echo(snapshot, cancel=cancel), self)
        call.finished.connect(lambda result, error: self._tested(snapshot, result, error))
        self._call = call.start()
        return call

    def _tested(self, node: PacsNode, elapsed: Any, error: str) -> None:
        self.test_button.setEnabled(self.current() is not None)
        if error:
            self._set_status(error, error=True)
        else:
            self._set_status(f"{node.label} answered in {1000 * float(elapsed):.0f} ms.")
        self.tested.emit(node, elapsed, error)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(_ERROR_STYLE if error else _OK_STYLE)

    def shutdown(self, ms: int = 1500) -> None:
        self._cancel.set()
        if self._call is not None and self._call.is_running():
            self._call.wait(ms)


# ====================================================================== query / retrieve dialog
class PacsDialog(QDialog):
    """Search a PACS, list studies and series, retrieve the ticked series into a new cache folder.

    ``retrieved(folder)`` is emitted when images arrived (the folder holds one sub-folder per series);
    the main window imports it with :func:`planner.imaging.load_path`.
    """

    retrieved = Signal(str)
    #: emitted after each search with the number of studies found (for tests and status bars)
    searched = Signal(int)
    series_listed = Signal(int)
    #: the RetrieveResult (also after cancel or failure)
    retrieve_finished = Signal(object)
    #: (plan SR file, node, study match) after "Open plan" retrieved a plan of this application
    plan_retrieved = Signal(str, object, object)
    #: the number of plans found in the selected study
    plans_listed = Signal(int)

    STUDY_COLUMNS = ["Patient name", "Patient ID", "Birth date", "Study date", "Accession", "Description",
                     "Modalities", "Series", "Images"]
    SERIES_COLUMNS = ["", "No.", "Modality", "Description", "Images"]

    def __init__(self, parent: Optional[QWidget] = None, *, cache_folder: Optional[Path] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS: query and retrieve")
        self.resize(1100, 720)
        self.cache_folder = Path(cache_folder) if cache_folder is not None else None
        self.studies: list[pacs.StudyMatch] = []
        self.series: list[pacs.SeriesMatch] = []
        self.cancel_event = threading.Event()
        self._call: Optional[BackgroundCall] = None
        self._closing = False
        self.last_result: Optional[RetrieveResult] = None
        #: the plan series (SRs of this application) of the selected study
        self.plans: list[pacs.SeriesMatch] = []
        #: the study whose series the series table shows (or was asked for)
        self._series_study_uid: Optional[str] = None

        layout = QVBoxLayout(self)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs, 1)
        self.tabs.addTab(self._build_search_tab(), "Query / Retrieve")
        self.node_editor = NodeEditor()
        self.node_editor.nodes_saved.connect(self._reload_nodes)
        self.tabs.addTab(self.node_editor, "PACS nodes")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._reload_nodes()

    # ------------------------------------------------------------------ layout
    def _build_search_tab(self) -> QWidget:
        tab = QWidget()
        v = QVBoxLayout(tab)
        top = QHBoxLayout()
        top.addWidget(QLabel("PACS"))
        self.node_combo = QComboBox()
        self.node_combo.setObjectName("pacsNodeCombo")
        self.node_combo.setMinimumWidth(280)
        top.addWidget(self.node_combo, 1)
        self.echo_button = QPushButton("Test connection")
        self.echo_button.clicked.connect(self.test_connection)
        top.addWidget(self.echo_button)
        self.edit_nodes_button = QPushButton("Configure...")
        self.edit_nodes_button.clicked.connect(lambda: self.tabs.setCurrentWidget(self.node_editor))
        top.addWidget(self.edit_nodes_button)
        v.addLayout(top)

        box = QGroupBox("Search")
        grid = QGridLayout(box)
        self.patient_id_edit = QLineEdit()
        self.patient_name_edit = QLineEdit()
        self.patient_name_edit.setPlaceholderText("SMITH or Smith, John (matches from the start)")
        self.date_edit = QLineEdit()
        self.date_edit.setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        self.date_preset = QComboBox()
        self.date_preset.addItems(DATE_PRESETS)
        self.date_preset.currentIndexChanged.connect(self._apply_date_preset)
        self.accession_edit = QLineEdit()
        self.modality_combo = QComboBox()
        self.modality_combo.setEditable(True)
        self.modality_combo.addItems(MODALITIES)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        for w in (self.patient_id_edit, self.patient_name_edit, self.date_edit, self.accession_edit):
            w.returnPressed.connect(self.search)
        grid.addWidget(QLabel("Patient ID"), 0, 0)
        grid.addWidget(self.patient_id_edit, 0, 1)
        grid.addWidget(QLabel("Patient name"), 0, 2)
        grid.addWidget(self.patient_name_edit, 0, 3)
        grid.addWidget(QLabel("Accession"), 0, 4)
        grid.addWidget(self.accession_edit, 0, 5)
        grid.addWidget(QLabel("Study date"), 1, 0)
        date_row = QHBoxLayout()
        date_row.addWidget(self.date_edit, 1)
        date_row.addWidget(self.date_preset)
        grid.addLayout(date_row, 1, 1, 1, 3)
        grid.addWidget(QLabel("Modality"), 1, 4)
        grid.addWidget(self.modality_combo, 1, 5)
        grid.addWidget(self.search_button, 0, 6, 2, 1)
        v.addWidget(box)

        split = QSplitter(Qt.Orientation.Vertical)
        self.study_table = self._table(self.STUDY_COLUMNS)
        self.study_table.setObjectName("pacsStudyTable")
        self.study_table.itemSelectionChanged.connect(self._study_selected)
        split.addWidget(self.study_table)
        series_box = QWidget()
        sv = QVBoxLayout(series_box)
        sv.setContentsMargins(0, 0, 0, 0)
        srow = QHBoxLayout()
        self.series_label = QLabel("Series")
        srow.addWidget(self.series_label, 1)
        self.select_all = QCheckBox("All series")
        self.select_all.setChecked(True)
        self.select_all.toggled.connect(self._tick_all)
        srow.addWidget(self.select_all)
        sv.addLayout(srow)
        self.series_table = self._table(self.SERIES_COLUMNS)
        self.series_table.setObjectName("pacsSeriesTable")
        self.series_table.itemChanged.connect(lambda _i: self._update_buttons())
        sv.addWidget(self.series_table, 1)
        prow = QHBoxLayout()
        self.plans_label = QLabel("Plans in this study")
        prow.addWidget(self.plans_label)
        self.plan_list = QListWidget()
        self.plan_list.setObjectName("pacsPlanList")
        self.plan_list.setMaximumHeight(52)
        self.plan_list.itemSelectionChanged.connect(self._update_buttons)
        prow.addWidget(self.plan_list, 1)
        self.open_plan_button = QPushButton("Open plan")
        self.open_plan_button.setToolTip("Retrieve the plan (its structured report) and open it; its images are "
                                         "taken from the local cache, else retrieved by UID")
        self.open_plan_button.clicked.connect(self.open_plan)
        prow.addWidget(self.open_plan_button)
        sv.addLayout(prow)
        split.addWidget(series_box)
        split.setSizes([220, 360])
        v.addWidget(split, 1)

        bottom = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        bottom.addWidget(self.progress, 1)
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.setToolTip("Copy the ticked series into a new local folder and open them")
        self.retrieve_button.clicked.connect(self.retrieve)
        bottom.addWidget(self.retrieve_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        bottom.addWidget(self.cancel_button)
        v.addLayout(bottom)
        self.message = QLabel("")
        self.message.setObjectName("pacsMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.message)
        self.incomplete_box = QWidget()
        ib = QHBoxLayout(self.incomplete_box)
        ib.setContentsMargins(0, 0, 0, 0)
        self.incomplete_label = QLabel("")
        self.incomplete_label.setObjectName("pacsIncomplete")
        self.incomplete_label.setWordWrap(True)
        self.incomplete_label.setStyleSheet(_ERROR_STYLE)
        ib.addWidget(self.incomplete_label, 1)
        self.retry_button = QPushButton("Retry")
        self.retry_button.setToolTip("Ask the PACS again for the missing images only")
        self.retry_button.clicked.connect(self.retry_incomplete)
        ib.addWidget(self.retry_button)
        self.keep_button = QPushButton("Keep as incomplete")
        self.keep_button.setToolTip("Open the images that arrived, marked as an incomplete series")
        self.keep_button.clicked.connect(self.keep_incomplete)
        ib.addWidget(self.keep_button)
        self.incomplete_box.hide()
        v.addWidget(self.incomplete_box)
        return tab

    @staticmethod
    def _table(columns: Sequence[str]) -> QTableWidget:
        t = QTableWidget(0, len(columns))
        t.setHorizontalHeaderLabels(list(columns))
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setAlternatingRowColors(True)
        t.horizontalHeader().setStretchLastSection(True)
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        return t

    # ------------------------------------------------------------------ state
    def _reload_nodes(self) -> None:
        current = self.node_combo.currentText()
        self.nodes = pacs.load_nodes()
        self.node_combo.clear()
        for n in self.nodes:
            self.node_combo.addItem(n.display_name)
        if current:
            idx = self.node_combo.findText(current)
            if idx >= 0:
                self.node_combo.setCurrentIndex(idx)
        if not self.nodes:
            self._set_message("No PACS is configured yet: add one on the 'PACS nodes' tab.")
        self._update_buttons()

    def current_node(self) -> Optional[PacsNode]:
        i = self.node_combo.currentIndex()
        return self.nodes[i] if 0 <= i < len(self.nodes) else None

    def busy(self) -> bool:
        return self._call is not None and not self._call.done

    def _update_buttons(self) -> None:
        busy = self.busy()
        has_node = self.current_node() is not None
        for w in (self.search_button, self.echo_button, self.node_combo):
            w.setEnabled(has_node and not busy)
        self.retrieve_button.setEnabled(has_node and not busy and bool(self.checked_series()))
        self.open_plan_button.setEnabled(has_node and not busy and bool(self.plan_list.selectedItems()))
        for w in (self.retry_button, self.keep_button):
            w.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _set_message(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(_ERROR_STYLE if error else "")

    def _run(self, fn: Callable[..., Any], on_done: Callable[[Any, str], None],
             on_progress: Optional[Callable[[float, str], None]] = None) -> Optional[BackgroundCall]:
        """Run ``fn(progress, cancel)`` off the GUI thread; Cancel (and closing) sets ``cancel``."""
        if self.busy() or self._closing:
            return None
        self.cancel_event = threading.Event()
        cancel = self.cancel_event
        call = BackgroundCall(lambda p: fn(p, cancel), self)
        call.finished.connect(lambda r, e: self._finished(on_done, r, e))
        if on_progress is not None:
            call.progress.connect(on_progress)
        self._call = call
        call.start()
        self._update_buttons()
        return call

    def _finished(self, on_done: Callable[[Any, str], None], result: Any, error: str) -> None:
        if self._closing:
            return
        try:
            on_done(result, error)
        finally:
            self._update_buttons()
        study = self.selected_study()
        if study is not None and study.study_uid != self._series_study_uid and not self.busy():
            self._study_selected()  # another study was picked while the PACS was busy

    # ------------------------------------------------------------------ actions
    def test_connection(self) -> Optional[BackgroundCall]:
        node = self.current_node()
        if node is None:
            return None
        self._set_message(f"Testing {node.label}...")
        return self._run(lambda _p, c: pacs.echo(node, cancel=c), lambda r, e: self._set_message(
            e or f"{node.label} answered in {1000 * float(r):.0f} ms.", error=bool(e)))

    def _apply_date_preset(self, index: int) -> None:
        today = date.today()
        days = {1: 0, 2: 7, 3: 30, 4: 365}.get(index)
        if index == 0:
            self.date_edit.setText("")
        elif days == 0:
            self.date_edit.setText(today.strftime("%Y%m%d"))
        elif days is not None:
            self.date_edit.setText(f"{(today - timedelta(days=days)).strftime('%Y%m%d')}-{today.strftime('%Y%m%d')}")

    def search(self) -> Optional[BackgroundCall]:
        node = self.current_node()
        if node is None or self.busy():
            return None
        try:
            date_text = pacs.date_range(self.date_edit.text())
        except PacsError as exc:
            self._set_message(str(exc), error=True)
            return None
        criteria = dict(patient_id=self.patient_id_edit.text(), patient_name=self.patient_name_edit.text(),
                        study_date=date_text, accession=self.accession_edit.text(),
                        modality=self.modality_combo.currentText())
        self._set_message(f"Searching {node.display_name}...")
        self.study_table.setRowCount(0)
        self.series_table.setRowCount(0)
        self.studies, self.series = [], []
        return self._run(lambda _p, c: pacs.find_studies(node, **criteria, cancel=c), self._show_studies)

    def _show_studies(self, studies: Any, error: str) -> None:
        if error:
            self._set_message(error, error=True)
            self.searched.emit(0)
            return
        self.studies = list(studies)
        t = self.study_table
        t.setRowCount(len(self.studies))
        for row, s in enumerate(self.studies):
            values = [s.patient_name.replace("^", ", ", 1).replace("^", " "), s.patient_id, _date(s.patient_birth_date),
                      _date(s.study_date), s.accession, s.description, ", ".join(s.modalities),
                      "" if s.n_series is None else str(s.n_series),
                      "" if s.n_instances is None else str(s.n_instances)]
            for col, text in enumerate(values):
                t.setItem(row, col, QTableWidgetItem(text))
        t.resizeColumnsToContents()
        more = " (more matched; narrow the search)" if getattr(studies, "truncated", False) else ""
        self._set_message(f"{len(self.studies)} stud{'y' if len(self.studies) == 1 else 'ies'} found{more}."
                          if self.studies else "No study matches the search.")
        self.searched.emit(len(self.studies))
        if len(self.studies) == 1:
            t.selectRow(0)

    def selected_study(self) -> Optional[pacs.StudyMatch]:
        rows = self.study_table.selectionModel().selectedRows() if self.study_table.selectionModel() else []
        return self.studies[rows[0].row()] if rows and rows[0].row() < len(self.studies) else None

    def _study_selected(self) -> None:
        study = self.selected_study()
        if self.busy():  # a search or retrieve is running: the series are listed when it ends
            return
        self.series_table.setRowCount(0)
        self.plan_list.clear()
        self.series = []
        self._series_study_uid = None
        self._update_buttons()
        node = self.current_node()
        if study is None or node is None:
            return
        self._series_study_uid = study.study_uid
        self.series_label.setText("Series (asking the PACS...)")
        self._run(lambda _p, c: pacs.find_series(node, study.study_uid, cancel=c), self._show_series)

    def _show_series(self, series: Any, error: str) -> None:
        if error:
            self.series_label.setText("Series")
            self._set_message(error, error=True)
            self.series_listed.emit(0)
            return
        self.plans = [s for s in series if is_plan_series(s)]
        self.plan_list.clear()
        for s in self.plans:
            self.plan_list.addItem(QListWidgetItem(f"Plan {s.series_number or ''} \u2014 {s.description}".strip()))
        if self.plans:
            self.plan_list.setCurrentRow(len(self.plans) - 1)
        self.plans_label.setText(f"Plans in this study ({len(self.plans)})")
        self.plans_listed.emit(len(self.plans))
        self.series = list(series)
        t = self.series_table
        t.blockSignals(True)
        t.setRowCount(len(self.series))
        for row, s in enumerate(self.series):
            tick = QTableWidgetItem("")
            tick.setFlags(Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            tick.setCheckState(Qt.CheckState.Checked if self.select_all.isChecked() else Qt.CheckState.Unchecked)
            t.setItem(row, 0, tick)
            values = ["" if s.series_number is None else str(s.series_number), s.modality, s.description,
                      "" if s.n_instances is None else str(s.n_instances)]
            for col, text in enumerate(values, start=1):
                t.setItem(row, col, QTableWidgetItem(text))
        t.blockSignals(False)
        t.resizeColumnsToContents()
        self.series_label.setText(f"Series ({len(self.series)})")
        study = self.selected_study()
        if study is not None and study.n_series is not None and study.n_series != len(self.series):
            self._set_message(f"The PACS lists {len(self.series)} series for a study it says has {study.n_series}; "
                              "select the study again to ask once more.", error=True)
        self.series_listed.emit(len(self.series))
        self._update_buttons()

    def _tick_all(self, on: bool) -> None:
        t = self.series_table
        t.blockSignals(True)
        for row in range(t.rowCount()):
            item = t.item(row, 0)
            if item is not None:
                item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        t.blockSignals(False)
        self._update_buttons()

    def set_series_checked(self, series_uid: str, on: bool) -> None:
        for row, s in enumerate(self.series):
            if s.series_uid == series_uid:
                self.series_table.item(row, 0).setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def checked_series(self) -> list[pacs.SeriesMatch]:
        out = []
        for row, s in enumerate(self.series):
            item = self.series_table.item(row, 0)
            if item is not None and item.checkState() == Qt.CheckState.Checked:
                out.append(s)
        return out

    def retrieve(self, *, folder: Optional[Path] = None,
                 series_uids: Optional[Sequence[str]] = None) -> Optional[BackgroundCall]:
        """Retrieve the ticked series (every one asked by UID, so a series missing from an answer is never
        silently left out) into a new cache folder, or resume ``series_uids`` into ``folder``."""
        node, study, chosen = self.current_node(), self.selected_study(), self.checked_series()
        uids = list(series_uids) if series_uids else [s.series_uid for s in chosen]
        if node is None or study is None or not uids or self.busy():
            return None
        folder = folder or new_cache_folder(self.cache_folder)
        self.progress.setValue(0)
        self.incomplete_box.hide()
        self._set_message(f"Retrieving {len(uids)} series from {node.display_name}...")
        def work(progress, cancel):
            from planner.imaging.pacs.cache import clean_cache

            clean_cache(keep=[folder])  # expired retrieves go first (retention and size limit of the cache)
            return pacs.retrieve(node, study.study_uid, uids, dest_folder=folder, patient_id=study.patient_id,
                                 progress=progress, cancel=cancel)

        return self._run(work, self._retrieved, self._on_progress)

    @Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        if self._closing:
            return
        self.progress.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        if not self.cancel_event.is_set():
            self._set_message(message)

    def cancel(self) -> None:
        if self.busy():
            self.cancel_event.set()
            self._set_message("Cancelling...")

    def _retrieved(self, result: Optional[RetrieveResult], error: str) -> None:
        if error or result is None:
            self.progress.setValue(0)
            self._set_message(error or "The retrieve failed.", error=True)
            return
        self.last_result = result
        self.progress.setValue(1000 if result.ok else self.progress.value())
        self._set_message(result.summary(), error=bool(result.problems or result.incomplete))
        if result.incomplete:
            names = {s.series_uid: (s.description or s.modality or "series") for s in self.series}
            self.incomplete_label.setText("Incomplete: " + "; ".join(
                f"{names.get(uid, 'series')} ({have} of {want})" for uid, (have, want) in result.incomplete.items())
                + ". Retry fetches only the missing images.")
            self.incomplete_box.show()
        self.retrieve_finished.emit(result)
        if result.files and not result.cancelled:
            self.retrieved.emit(str(result.folder))  # complete series only: short ones are kept apart

    def retry_incomplete(self) -> Optional[BackgroundCall]:
        result = self.last_result
        if result is None or not result.incomplete:
            return None
        return self.retrieve(folder=result.folder, series_uids=list(result.incomplete))

    def keep_incomplete(self) -> None:
        """The user's choice: open the short series as they are (the message says they are incomplete)."""
        result = self.last_result
        if result is None or not result.incomplete:
            return
        self.incomplete_box.hide()
        self._set_message(f"Opening {len(result.incomplete)} incomplete series as they are.", error=True)
        self.retrieved.emit(str(result.incomplete_folder))

    # ------------------------------------------------------------------ plans in the PACS
    def open_plan(self) -> Optional[BackgroundCall]:
        node, study = self.current_node(), self.selected_study()
        rows = self.plan_list.selectedIndexes()
        if node is None or study is None or not rows or self.busy():
            return None
        series = self.plans[rows[0].row()]
        folder = new_cache_folder(self.cache_folder)
        self._set_message(f"Retrieving the plan from {node.display_name}...")
        return self._run(lambda p, c: fetch_plan(node, study.study_uid, series.series_uid, folder,
                                                 patient_id=study.patient_id, progress=p, cancel=c),
                         lambda r, e: self._plan_fetched(node, study, r, e), self._on_progress)

    def _plan_fetched(self, node: PacsNode, study: Any, path: Any, error: str) -> None:
        if error or not path:
            self._set_message(error or "The plan could not be retrieved.", error=True)
            return
        self._set_message(f"Plan retrieved from {node.display_name}.")
        self.plan_retrieved.emit(str(path), node, study)

    # ------------------------------------------------------------------ closing
    def shutdown(self, ms: int = 1500) -> None:
        """Cancel what runs and wait for it: a cancelled PACS call returns within a second."""
        self.cancel_event.set()
        if self._call is not None and self._call.is_running():
            self._call.wait(ms)
        self.node_editor.shutdown(ms)

    def done(self, code: int) -> None:  # close, reject and accept all end here
        self._closing = True
        self.shutdown()
        super().done(code)

    def closeEvent(self, event: Any) -> None:
        self._closing = True
        self.shutdown()
        super().closeEvent(event)


def _date(value: str) -> str:
    v = (value or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v


# ====================================================================== sending exports
class SendToPacsDialog(QDialog):
    """Pick a configured PACS and send files (C-STORE or STOW-RS) with a progress bar and Cancel."""

    #: the StoreResult
    sent = Signal(object)

    def __init__(self, files: Sequence[Union[str, Path]], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Send to PACS")
        self.resize(560, 240)
        self.files = [Path(f) for f in files]
        self.nodes = pacs.load_nodes()
        self.result_: Optional[StoreResult] = None
        self.cancel_event = threading.Event()
        self._call: Optional[BackgroundCall] = None
        self._closing = False
        v = QVBoxLayout(self)
        v.addWidget(QLabel(f"{len(self.files)} DICOM file(s) to send into the patient's record."))
        row = QHBoxLayout()
        row.addWidget(QLabel("PACS"))
        self.node_combo = QComboBox()
        for n in self.nodes:
            self.node_combo.addItem(n.display_name)
        row.addWidget(self.node_combo, 1)
        v.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        v.addWidget(self.progress)
        self.message = QLabel("" if self.nodes else "No PACS is configured: add one in File > PACS first.")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setStyleSheet("" if self.nodes else _ERROR_STYLE)
        v.addWidget(self.message, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        self.send_button.setEnabled(bool(self.nodes) and bool(self.files))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel_or_close)
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.cancel_button)
        v.addLayout(buttons)

    def current_node(self) -> Optional[PacsNode]:
        i = self.node_combo.currentIndex()
        return self.nodes[i] if 0 <= i < len(self.nodes) else None

    def busy(self) -> bool:
        return self._call is not None and not self._call.done

    def send(self) -> Optional[BackgroundCall]:
        node = self.current_node()
        if node is None or self.busy():
            return None
        self.cancel_event = threading.Event()
        cancel, files = self.cancel_event, list(self.files)
        self.send_button.setEnabled(False)
        self.node_combo.setEnabled(False)
        self.message.setStyleSheet("")
        self.message.setText(f"Sending to {node.label}...")
        def work(progress):
            # through the send queue on disk: what does not arrive now is sent again later, also after a restart
            job = send_queue.enqueue(node, files)
            result = send_queue.send(job, node, progress=progress, cancel=cancel)
            if isinstance(result, PacsError):
                raise PacsError(f"{result} The files stay in the send queue and are sent again later.")
            send_queue.process(self.nodes, cancel=cancel)  # earlier exports that are due go along
            return result

        call = BackgroundCall(work, self)
        call.progress.connect(self._on_progress)
        call.finished.connect(self._done)
        self._call = call.start()
        return call

    @Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        if not self._closing:
            self.progress.setValue(int(round(1000 * fraction)))
            self.message.setText(message)

    def _done(self, result: Optional[StoreResult], error: str) -> None:
        if self._closing:
            return
        self.send_button.setEnabled(True)
        self.node_combo.setEnabled(True)
        if error or result is None:
            self.message.setText(error or "Sending failed.")
            self.message.setStyleSheet(_ERROR_STYLE)
            return
        self.result_ = result
        self.progress.setValue(1000 if result.ok else self.progress.value())
        self.message.setText(result.summary() + ("" if result.ok else
                                                 "\nWhat did not arrive stays in the send queue and is sent again later."))
        self.message.setStyleSheet(_OK_STYLE if result.ok else _ERROR_STYLE)
        self.cancel_button.setText("Close")
        if result.ok:
            self.send_button.setEnabled(False)
        self.sent.emit(result)

    def _cancel_or_close(self) -> None:
        if self.busy():
            self.cancel_event.set()
            self.message.setText("Cancelling...")
        else:
            self.reject()

    def done(self, code: int) -> None:
        self._closing = True
        self.cancel_event.set()
        if self._call is not None and self._call.is_running():
            self._call.wait(1500)  # a cancelled send returns within a second
        super().done(code)


def send_to_pacs(parent: Optional[QWidget], files: Sequence[Union[str, Path]]) -> Optional[StoreResult]:
    """Ask which PACS, send ``files`` there (modal) and return the StoreResult (None when not sent)."""
    if not pacs.load_nodes():
        QMessageBox.information(parent, "Send to PACS",
                                "No PACS is configured yet. Open the PACS window and add one on its 'PACS nodes' tab.")
        return None
    dlg = SendToPacsDialog(files, parent)
    dlg.exec()
    return dlg.result_
