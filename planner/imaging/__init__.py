"""Image import (DICOM folders, DICOMDIR, zip, research formats, PACS) into volumes and projection
images with exact patient geometry (``ijk_to_lps``, LPS mm).

Public API::

    result = load_path(path_or_paths, progress=None, cancel=None, load_pixels=True)
    result.images        # {key: Volume | ProjectionImage}, key = Series Instance UID (see ImageInfo.key)
    result.series        # [SeriesSummary]: UIDs, modality, size, spacing, ijk_to_lps, warnings, ...
    result.studies()     # [StudySummary]: studies -> series keys
    result.report        # ImportReport: every file loaded or skipped with the reason

    scanned = scan_path(path)                    # headers only: list series fast
    image = load_series(scanned.groups[key])     # decode one of them
    regular = resample_regular(volume)           # explicit resampling (tilt, irregular spacing)

Cancelling returns what is complete with ``report.cancelled = True`` (no exception from
``load_path``); ``load_series`` raises :class:`ImportCancelled`.

Hostile and damaged input: every file is read and decoded inside its own guard (a failure is a report
entry, never the end of the import); images are checked against :class:`ImportLimits` (memory budget,
time limit) before anything is allocated; decoders run in worker processes killed at the time limit
or on Cancel (docs/architecture.md, "Hostile and damaged input").

Pixel values: Rescale Slope/Intercept applied (integer types when both are integers, else float32).
MONOCHROME1 images (CR/DX) are inverted at load so that higher values are always brighter, exactly
as GDCM/SimpleITK do: ``v -> (lo + hi) - v`` over the rescaled range of Bits Stored; header windows
are mirrored the same way and ``ImageInfo.extra["inverted_monochrome1"]`` is set. Viewers therefore
never need to know the photometric interpretation.
"""

from planner.imaging.volume import (  # noqa: F401
    ImageInfo,
    MeasurementScale,
    ProjectionGeometry,
    ProjectionImage,
    Volume,
    WindowLevel,
    make_ijk_to_lps,
)
from planner.imaging.report import FileEntry, ImportReport  # noqa: F401
from planner.imaging.limits import ImportLimits  # noqa: F401
from planner.imaging.importer import (  # noqa: F401
    ImportCancelled,
    ImportResult,
    LoadError,
    SeriesSummary,
    StudySummary,
    load_path,
    load_series,
    scan_path,
)
from planner.imaging.series import SeriesGroup  # noqa: F401
from planner.imaging.pixels import prestart_decoders  # noqa: F401


def __getattr__(name: str):
    # resample_regular needs scipy (0.3 s to import): loaded on first use, not at start-up
    if name == "resample_regular":
        from planner.imaging.resample import resample_regular

        return resample_regular
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
