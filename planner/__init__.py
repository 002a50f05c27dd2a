"""BVN Planner: planning of basivertebral nerve ablation on lumbar spine MRI, CT and fluoroscopy.

The ``planner`` package is the headless core (no Qt widgets): the plan document, geometry,
clinical checks, persistence and reports. ``planner.imaging`` reads images into volumes with
patient geometry; ``planner.views`` holds the Qt and VTK widgets only.

All geometry is in DICOM patient coordinates: LPS (x to the patient's left, y to posterior,
z to superior), in millimetres.
"""

__version__ = "0.1.0"
APP_NAME = "BVN Planner"
