"""Exports of a plan to DICOM: Encapsulated PDF, Secondary Capture key images and a Comprehensive 3D SR
(:func:`export_dicom`), the SR import (:func:`import_plan_from_sr`), and the de-identified teaching
export (``export_dicom(..., deidentify=True)``, :mod:`planner.deidentify`)."""

from planner.export.dicom import (  # noqa: F401
    ExportCancelled, ExportError, ExportResult, PreparedExport, export_dicom, prepare_export, write_export)
from planner.export.sr import SRImportError, import_plan_from_sr  # noqa: F401
