"""Qt and VTK widgets: they show the Session and the PlanDocument and send edits to it; they own no
data. Nothing here is imported by the headless core. Start at :mod:`planner.views.app`."""
