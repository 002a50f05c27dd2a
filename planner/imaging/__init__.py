"""Image import (DICOM folders, DICOMDIR, zip, research formats, PACS) into volumes and projection
images with exact patient geometry (``ijk_to_lps``, LPS mm)."""

from planner.imaging.volume import (  # noqa: F401
    ImageInfo,
    MeasurementScale,
    ProjectionGeometry,
    ProjectionImage,
    Volume,
    WindowLevel,
    make_ijk_to_lps,
)
