"""Small helpers that build realistic plans for tests."""

from __future__ import annotations

from planner.plan import Landmarks, Level, Plan, Trajectory


def box_landmarks(z: float) -> Landmarks:
    """Landmarks of an axis-aligned box vertebra centred at (0, 0, z): 40 mm deep, 25 mm high."""
    return Landmarks(
        body_center_lps=(0.0, 0.0, z),
        superior_endplate_lps=(0.0, 0.0, z + 12.5),
        inferior_endplate_lps=(0.0, 0.0, z - 12.5),
        posterior_wall_lps=(0.0, 17.5, z),
        anterior_wall_lps=(0.0, -17.5, z),
        pedicle_left_lps=(12.0, 25.0, z + 3),
        pedicle_right_lps=(-12.0, 25.0, z + 3),
    )


def sample_plan() -> Plan:
    plan = Plan(author="Dr Test")
    plan.case.patient_name = "Doe^Jane"
    plan.case.patient_id = "PID-123"
    plan.case.study_instance_uid = "1.2.3.4"
    for i, name in enumerate(["L3", "L4", "L5"]):
        plan.levels.append(Level(name=name, landmarks=box_landmarks(-40.0 * i)))
    l4 = plan.levels[1]
    l4.treat = True
    l4.inferior.modic_type = "1"
    plan.trajectories.append(Trajectory(level_id=l4.id, side="left", entry_lps=(15.0, 40.0, -40.0),
                                        bend_lps=(8.0, 15.0, -40.0), target_lps=(0.0, 2.0, -40.0)))
    return plan
