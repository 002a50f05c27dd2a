"""Start the desktop application: ``run_gui(args)`` with the arguments of main.py
(path, demo, review, images, layout, screenshot, size).

Start-up is kept short (goal: first image on screen within 2 s): only the needed VTK modules are
imported, the main window builds only the layout it shows, volume rendering and the side panels are
set up after the first image is on screen, and no traceback ever reaches the user (a short message
and the log file instead).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

#: perf_counter() when this module was imported (a fallback for :func:`seconds_since_process_start`).
PROCESS_START = time.perf_counter()


def seconds_since_process_start() -> float:
    """Seconds since the operating system started this process (interpreter start-up included);
    on systems without /proc, since this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        start_ticks = float(fields[19])  # field 22 of /proc/<pid>/stat: start time in clock ticks
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - PROCESS_START
RESOURCES = Path(__file__).resolve().parents[2] / "resources"


class StartupError(Exception):
    """A start-up problem with a message for the user (bad path, missing module...)."""


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise StartupError(f"--size must look like 1600x1000, got {text!r}") from None
    if not (200 <= w <= 10000 and 200 <= h <= 10000):
        raise StartupError(f"--size {text} is out of range (200..10000 pixels per side)")
    return w, h


# ---------------------------------------------------------------------- application set-up
def create_application(argv: Optional[list[str]] = None):
    """The QApplication with high-DPI settings, the Fusion style, a dark palette and the style sheet."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else [sys.argv[0]])
    from planner import APP_NAME, __version__

    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationName("BVN Planner")
    apply_theme(app)
    return app


def apply_theme(app) -> None:
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#1e2227", QPalette.ColorRole.WindowText: "#dfe3e8",
        QPalette.ColorRole.Base: "#15181c", QPalette.ColorRole.AlternateBase: "#1b1f24",
        QPalette.ColorRole.ToolTipBase: "#2b3038", QPalette.ColorRole.ToolTipText: "#e8eaed",
        QPalette.ColorRole.Text: "#dfe3e8", QPalette.ColorRole.Button: "#2a2f36",
        QPalette.ColorRole.ButtonText: "#dfe3e8", QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: "#2f6f9f", QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#6ab0e6", QPalette.ColorRole.PlaceholderText: "#7d8590",
    }
    for role, color in roles.items():
        pal.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b727c"))
    app.setPalette(pal)
    qss = RESOURCES / "style.qss"
    try:
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
    except OSError as exc:
        log.warning("style sheet %s not loaded: %s", qss, exc)


def install_excepthook(window_getter) -> None:
    """Unexpected errors are logged (redacted) and shown as a short message, never as a traceback."""

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
        try:
            from PySide6.QtCore import Qt
            from PySide6.QtWidgets import QMessageBox

            from planner.logsafe import log_file_path

            win = window_getter()
            text = (f"Something went wrong ({exc_type.__name__}). Your plan is unchanged and an autosaved copy "
                    f"is kept.\nDetails are in the log file:\n{log_file_path()}")
            if win is not None and not getattr(win, "_closed", False):
                win.show_message(f"Unexpected error ({exc_type.__name__}); see the log file")
                box = QMessageBox(QMessageBox.Icon.Warning, "BVN Planner", text, QMessageBox.StandardButton.Ok, win)
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.open()
        except Exception:  # the hook itself must never raise
            pass

    sys.excepthook = hook


# ---------------------------------------------------------------------- opening things
def load_images_into(session, paths: list[str]) -> tuple[Any, list[dict]]:
    """Import ``paths`` synchronously into the session: the images of the session's patient (the
    first patient found when the session is empty) are added. Returns the ImportResult and the
    images of other patients, one dict per patient, for the window to offer (one patient per plan)."""
    from planner.imaging import load_path
    from planner.session import group_by_patient

    result = load_path(paths if len(paths) != 1 else paths[0])
    mine: dict = {}
    others: list[dict] = []
    for group in group_by_patient(result.images):
        empty = not session.images and not mine and not session.document.plan.case.series
        if empty or not any(session.is_other_patient(k, img) for k, img in group.items()):
            mine.update(group)
        else:
            others.append(group)
    session.add_images(mine)
    return result, others


def relink_plan_images(session, images_folder: Optional[str] = None, *, plan_path: Optional[str] = None) -> str:
    """Load the open plan's series found by UID (in ``images_folder``, else the plan's path hints);
    adds them to the session and returns a message naming what is missing ("" when all were found)."""
    from planner.relink import find_plan_images

    plan = session.document.plan
    if not plan.case.series:
        return ""
    folders = [images_folder] if images_folder else None
    result = find_plan_images(plan, folders, plan_path=plan_path or session.document.path)
    session.add_images(result.images, keep_existing=True)
    return "" if not result.missing and not result.notes else result.message()


def open_demo(session, folder: Optional[str | Path] = None) -> str:
    """Load the built-in demo case (or a demo study already written to ``folder``): its images and its
    sample plan. Returns a title hint."""
    if folder is None:
        from planner.demo import ensure_demo_case

        folder = ensure_demo_case()
    folder = Path(folder)
    load_images_into(session, [str(folder)])
    sample = folder / "sample.bvnplan"
    if sample.is_file():
        from planner.storage import PlanFileError, load_plan

        try:
            plan = load_plan(str(sample))
        except PlanFileError as exc:
            raise StartupError(f"The demo plan could not be read: {exc}") from None
        session.document.replace_plan(plan)
    return "Demo case (not saved)"


def open_path(session, path: str, *, review: bool = False, images: Optional[str] = None) -> tuple[str, list[dict]]:
    """Open a .bvnplan (then its images by UID) or a DICOM folder / zip / file. Returns a title hint
    and the images of other patients found in the folder (see :func:`load_images_into`)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise StartupError(f"{p} does not exist")
    from planner.export.sr import SRImportError, import_plan_from_sr, is_plan_sr_file

    if p.is_file() and is_plan_sr_file(p):  # a plan exported to the PACS (its SR): opened as the plan
        try:
            plan = import_plan_from_sr(p)
        except SRImportError as exc:
            raise StartupError(str(exc)) from None
        session.document.replace_plan(plan, read_only=review)
        relink_plan_images(session, images)
        return f"{plan.case.patient_name or p.name} (from {p.name}, not saved)", []
    if p.suffix.lower() == ".bvnplan":
        from planner.recent import add_recent_plan
        from planner.storage import PlanFileError, load_plan

        try:
            plan = load_plan(str(p))
        except PlanFileError as exc:
            raise StartupError(str(exc)) from None
        session.document.replace_plan(plan, read_only=review, path=str(p))
        add_recent_plan(str(p))
        relink_plan_images(session, images, plan_path=str(p))
        return p.name, []
    result, others = load_images_into(session, [str(p)])
    if not result.images:
        raise StartupError(f"No images could be read from {p}: {result.report.to_text(max_files=5)}"
                           if hasattr(result.report, "to_text") else f"No images could be read from {p}")
    if review:
        session.document.read_only = True
    return p.name, others


def open_from_pacs(session, node_name: str, study_uid: Optional[str], series_uid: Optional[str] = None, *,
                   review: bool = False) -> str:
    """Open the plan stored in a configured PACS (``main.py --pacs NODE --study UID``) and its images
    (local cache first, then the PACS). Returns a title hint."""
    from planner.export.sr import SRImportError
    from planner.imaging.pacs import PacsError, load_nodes
    from planner.pacs_plan import open_plan_from_pacs, plan_image_folders
    from planner.relink import find_plan_images

    nodes = {n.display_name: n for n in load_nodes()}
    if node_name not in nodes:
        raise StartupError(f"No PACS named '{node_name}' is configured (known: {', '.join(nodes) or 'none'}).")
    if not study_uid:
        raise StartupError("--pacs needs --study with the Study Instance UID of the plan.")
    node = nodes[node_name]
    try:
        plan, sr_path = open_plan_from_pacs(node, study_uid, series_uid)
        session.document.replace_plan(plan, read_only=review)
        where = plan_image_folders(plan, node)
    except (PacsError, SRImportError) as exc:
        raise StartupError(str(exc)) from None
    if where.folders:
        session.add_images(find_plan_images(plan, where.folders).images, keep_existing=True)
    return f"{plan.case.patient_name or sr_path.name} (from {node.display_name}, not saved)"


# ---------------------------------------------------------------------- the side panels
def install_panels(window) -> list[str]:
    """Fill the window's docks with the side panels (series, levels, trajectories, eligibility,
    review); returns the names added."""
    return window.install_panels()


# ---------------------------------------------------------------------- first image timing
def first_image_ms(window) -> Optional[float]:
    """Milliseconds from process start until a slice view first painted an image (None if not yet)."""
    return getattr(window, "first_image_at_ms", None)


def _watch_first_image(window) -> None:
    from PySide6.QtCore import QObject, QEvent

    class Watcher(QObject):
        def eventFilter(self, obj, ev):  # noqa: N802
            if ev.type() == QEvent.Type.Paint and getattr(window, "first_image_at_ms", None) is None:
                # the paint runs right after this filter; check on the next event loop turn
                from PySide6.QtCore import QTimer

                QTimer.singleShot(0, check)
            return False

    def check():
        if getattr(window, "first_image_at_ms", None) is not None:
            return
        for c in window.views.all_canvases():
            if c.image_paints > 0:
                window.first_image_at_ms = seconds_since_process_start() * 1000.0
                log.info("first image on screen %.0f ms after start", window.first_image_at_ms)
                if os.environ.get("BVN_STARTUP_PROBE"):
                    # bench/view_bench.py: report and quit (the probe never asks questions)
                    print(f"first-image-ms {window.first_image_at_ms:.0f}", flush=True)
                    window.shutdown()
                    from PySide6.QtWidgets import QApplication

                    QApplication.instance().exit(0)
                return

    w = Watcher(window)
    for c in window.views.all_canvases():
        c.installEventFilter(w)
    window._first_image_watcher = w


# ---------------------------------------------------------------------- entry point
def build_window(args, session=None):
    """Create the application, the session and the main window and open what ``args`` ask for.
    Returns (app, window). Raises StartupError with a message for the user."""
    app = create_application()
    from planner.session import Session
    from planner.views.main_window import MainWindow

    session = session or Session()
    title = ""
    others: list[dict] = []
    if getattr(args, "demo", False):
        title = open_demo(session)
    elif getattr(args, "pacs", None):
        title = open_from_pacs(session, args.pacs, getattr(args, "study", None), getattr(args, "plan_series", None),
                               review=bool(getattr(args, "review", False)))
    elif getattr(args, "path", None):
        title, others = open_path(session, args.path, review=bool(getattr(args, "review", False)),
                                  images=getattr(args, "images", None))
    if getattr(args, "review", False):
        session.document.read_only = True
    screenshot = bool(getattr(args, "screenshot", None))
    window = MainWindow(session, initial_layout=getattr(args, "layout", None), restore_state=not screenshot)
    window.title_hint = title
    window.pending_other_patients = others
    window._update_title()
    return app, window


def after_first_frame(window) -> None:
    """What start-up defers until the first image is on screen: the decoder processes, the side
    panels, the crash-recovery offer, the missing-series offer of a plan opened from the command
    line (review mode too), and the question about other patients found in the opened folder.
    Each step on its own: a failure is shown to the user and logged by the exception hook
    (sys.excepthook), and the later steps (crash recovery above all) still run."""
    from planner.imaging import prestart_decoders

    def other_patients():  # a folder with several patients: ask about the others
        groups, window.pending_other_patients = window.pending_other_patients, []
        for group in groups:
            window.offer_other_patient(group)

    for step in (prestart_decoders,  # the compressed-image decoders start, ready for the next import
                 window.install_panels,
                 window.files.offer_recovery,
                 window.plan_images.offer,  # a plan's series not found: say which, offer a folder or PACS
                 other_patients):
        try:
            step()
        except Exception:  # noqa: BLE001 - shown by the hook, not hidden
            sys.excepthook(*sys.exc_info())


def run_gui(args) -> int:
    from planner.logsafe import setup_logging

    setup_logging()
    try:
        size = _parse_size(getattr(args, "size", None) or "1600x1000") if getattr(args, "screenshot", None) else None
        app, window = build_window(args)
    except StartupError as exc:
        print(f"BVN Planner: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback for the user
        log.exception("start-up failed")
        print(f"BVN Planner could not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "screenshot", None):
        return take_screenshot(app, window, args.screenshot, size)
    install_excepthook(lambda: window)
    _watch_first_image(window)
    window.show()
    from PySide6.QtCore import QTimer

    if not os.environ.get("BVN_STARTUP_PROBE"):
        QTimer.singleShot(300, lambda: after_first_frame(window))
    return int(app.exec())


def settle(app, ms: int = 200) -> None:
    """Process events for about ``ms`` milliseconds (layouts, deferred set-ups)."""
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def take_screenshot(app, window, path: str, size: Optional[tuple[int, int]]) -> int:
    """Show the window at ``size``, let the views and the 3D view finish, save a PNG, close; 0 on success."""
    try:
        if size:
            window.resize(*size)
        install_panels(window)
        window.show()
        settle(app, 300)
        vv = window.views.ensure_volume_view() if window.views.current == "planning" else None
        if vv is not None:
            end = time.perf_counter() + 5.0  # a loaded machine may need a moment to show the new 3D view
            while not vv.isVisible() and time.perf_counter() < end:
                settle(app, 50)
        if vv is not None and vv.isVisible():
            vv.ensure_volume_now()
            vv.render_now()
        settle(app, 200)
        img = window.grab_with_vtk()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        if img.isNull() or not img.save(str(out)):
            print(f"BVN Planner: could not write the screenshot {out}", file=sys.stderr)
            return 1
        print(f"screenshot saved: {out} ({img.width()}x{img.height()})")
        return 0
    except Exception as exc:
        log.exception("screenshot failed")
        print(f"BVN Planner: screenshot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        window.shutdown()
        window.close()
