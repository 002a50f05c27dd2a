"""Documents built headless from the plan document (never from screen state):

* the plan summary PDF for the physician and the chart (:func:`build_report_data`,
  :func:`render_report_pdf`),
* the patient explanation sheet, PDF and HTML, English and Spanish (:mod:`planner.report.sheet`).

The GUI's export actions and the ``report`` / ``sheet`` commands call these same functions.
"""

from planner.report.data import PLANNING_AID_STATEMENT, ReportData, build_report_data  # noqa: F401
from planner.report.pdf import render_report_pdf, report_pdf_bytes  # noqa: F401
