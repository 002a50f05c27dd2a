"""The rendering layer of the views (STYLE.md 2.12): plan objects turned into 2D overlays
(QPainter) and 3D actors (VTK). Geometry helpers in :mod:`slice_geometry` are Qt-free."""
