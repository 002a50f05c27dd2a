"""The presentation tier (docs/architecture.md, "Layers"): what the views and the documents show,
derived from the plan and the loaded images once, with no Qt (tested headless).

* :mod:`planner.display.results`: :class:`PlanResults`, the session's derived results per
  trajectory (the drawn shape, the checks, the walked path per volume) and per image (slice geometry,
  the plan on C-arm images and virtual projections), invalidated by one rule from the plan's changes
  and the image changes;
* :mod:`planner.display.slice_geometry`, :mod:`planner.display.trajectory_planes`: where the slice
  and trajectory views cut the volumes;
* :mod:`planner.display.roles`: which loaded series each view shows;
* :mod:`planner.display.fluoro`: the Qt-free half of the fluoroscopy guidance (marking sequence,
  plan drawings on C-arm images, virtual projections);
* :mod:`planner.display.annotations`: names, measurement texts, the level under a point and the
  trajectory the views follow;
* :mod:`planner.display.fields`: the editable ranges of plan fields, from the plan model.

The Qt widgets (``planner/views``) and the renderer layer (``planner/views/render``) read from here;
nothing here imports them.
"""
