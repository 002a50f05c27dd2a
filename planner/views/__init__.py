"""Qt and VTK widgets: they show the Session and the PlanDocument and send edits to it; they own no
data. The headless core imports nothing here except the renderer layer (:mod:`planner.views.render`),
which imports no Qt widget: the report's offscreen 3D picture uses its actor builder. Start at
:mod:`planner.views.app`."""
