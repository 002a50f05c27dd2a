"""``python main.py check PLAN.bvnplan [--json]``: fields, exit codes, clear errors (the image checks on\nreal images are in tests/test_plan_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from main import main
from planner.storage import save_plan
from planner.trajectory import suggest_trajectory, vertebra_frame
from tests.test_trajectory import POSES, ROOT_DIR, plan_with

LEVEL_FIELDS = {"name", "body_center_lps", "superior_endplate_lps", "inferior_endplate_lps", "posterior_wall_lps",
                "anterior_wall_lps", "pedicle_left_lps", "pedicle_right_lps"}
TRAJ_FIELDS = {"level", "side", "entry_lps", "bend_lps", "target_lps", "zone_diameter_mm", "length_mm",
               "medial_angle_deg", "cranial_angle_deg", "target_depth_pct", "midline_offset_mm", "canal_margin_mm",
               "pedicle_clearance_mm", "checks"}


def _passing_plan():
    plan = plan_with(POSES[0], "L4")
    plan.trajectories.append(suggest_trajectory(plan, plan.levels[0], "left"))
    plan.trajectories.append(suggest_trajectory(plan, plan.levels[0], "right", curved=False))
    return plan


def test_json_fields_and_exit_1_when_unverified(tmp_path, capsys):
    """Without images every landmark check passes but the image checks are not measured: the
    trajectories are unverified (exit 1), and every check says how it was obtained."""
    plan = _passing_plan()
    path = save_plan(plan, tmp_path / "p.bvnplan")
    assert main(["check", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert len(data["levels"]) == 1 and LEVEL_FIELDS <= set(data["levels"][0])
    lv = data["levels"][0]
    assert lv["name"] == "L4"
    assert lv["posterior_wall_lps"] == pytest.approx(list(plan.levels[0].landmarks.posterior_wall_lps))
    assert len(data["trajectories"]) == 2
    left, right = data["trajectories"]
    for t in (left, right):
        assert TRAJ_FIELDS <= set(t)
        assert set(t["pedicle_clearance_mm"]) == {"medial", "lateral", "upper", "lower"}
        assert t["pedicle_clearance_source"] is None  # not measured: the model is only quoted as an estimate
        assert t["overall"] == "unverified" and t["path_start"] == "entry"
        for c in t["checks"]:
            assert {"name", "status", "reason", "basis"} <= set(c)
            assert c["reason"]
            if c["name"] in ("canal", "bone_corridor", "other_bone", "pedicle_clearance", "zone"):
                assert c["status"] == "unverified" and c["basis"] == "not measured"
            else:
                assert c["status"] in ("pass", "warning") and c["basis"] == "from landmarks"
        pts = np.asarray(t["path_lps"])
        assert np.linalg.norm(np.diff(pts, axis=0), axis=1).max() <= 1.0
        assert pts[0] == pytest.approx(t["entry_lps"]) and pts[-1] == pytest.approx(t["target_lps"])
    assert left["level"] == "L4" and left["side"] == "left"
    assert left["bend_lps"] is not None and right["bend_lps"] is None  # straight path: null
    f = vertebra_frame(plan.levels[0])
    assert left["target_depth_pct"] == pytest.approx(f.depth_pct(plan.trajectories[0].target_lps), abs=1e-3)
    assert left["medial_angle_deg"] == pytest.approx(20.0, abs=0.01)
    assert left["zone_diameter_mm"] == 10.0


def test_failing_check_exit_1_and_table(tmp_path, capsys):
    plan = _passing_plan()
    traj = plan.trajectories[0]
    f = vertebra_frame(plan.levels[0])
    traj.target_lps = tuple(np.array(traj.target_lps) - (f.wall_depth_mm(traj.target_lps) - 2.0) * f.u)
    traj.override_reason = "discussed with Dr B"
    path = save_plan(plan, tmp_path / "fail.bvnplan")
    assert main(["check", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    canal = next(c for c in data["trajectories"][0]["checks"] if c["name"] == "canal_margin")
    assert canal["status"] == "fail" and canal["override_reason"] == "discussed with Dr B"
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL      ] canal_margin (from landmarks)" in out and "override reason: discussed with Dr B" in out
    assert "L4 left: FAIL" in out and "posterior wall" in out


@pytest.mark.parametrize("content,word", [(None, "not found"), ('{"format": "bvnplan", "levels": [', "damaged")])
def test_missing_or_damaged_plan_exit_2(tmp_path, capsys, content, word):
    path = tmp_path / "x.bvnplan"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["check", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert "x.bvnplan" in err and "Traceback" not in err
    assert word in err.lower() or "cannot open" in err.lower()


def test_levels_without_trajectories_and_missing_landmarks(tmp_path, capsys):
    plan = _passing_plan()
    plan.levels[0].landmarks.superior_endplate_lps = None
    path = save_plan(plan, tmp_path / "p.bvnplan")
    assert main(["check", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["levels"][0]["superior_endplate_lps"] is None
    t = data["trajectories"][0]
    assert t["target_depth_pct"] is None and t["checks"][0]["name"] == "landmarks"


def test_images_folder_missing_is_not_fatal(tmp_path, capsys):
    path = save_plan(_passing_plan(), tmp_path / "p.bvnplan")
    assert main(["check", str(path), "--json", "--images", str(tmp_path / "nope")]) == 1  # unverified
    captured = capsys.readouterr()
    assert "does not exist" in captured.err
    json.loads(captured.out)


def test_runs_as_a_process(tmp_path):
    path = save_plan(_passing_plan(), tmp_path / "p.bvnplan")
    proc = subprocess.run([sys.executable, "main.py", "check", str(path), "--json"], cwd=ROOT_DIR,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["overall"] == "unverified"
