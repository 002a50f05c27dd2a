"""Plan files: round trip, damaged and newer files refused with clear messages, atomic saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner import storage
from planner.plan import SCHEMA_VERSION, Comment, Landmarks, Level, Measurement, Plan, Trajectory
from planner.storage import PlanFileError, load_plan, save_plan
from tests.fuzz.hostile import SAVE_LOOP
from tests.plan_factory import sample_plan

ROOT = Path(__file__).resolve().parents[1]

coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
point = st.tuples(coord, coord, coord)
text = st.text(max_size=40)  # any unicode, including quotes, newlines and emoji
opt_point = st.none() | point


@st.composite
def plans(draw) -> Plan:
    plan = Plan(author=draw(text))
    plan.case.patient_name = draw(text)
    plan.case.study_instance_uid = draw(st.from_regex(r"[0-9]+(\.[0-9]+){2,8}", fullmatch=True))
    names = draw(st.lists(st.sampled_from(["T12", "L1", "L2", "L3", "L4", "L5", "S1"]), unique=True, max_size=7))
    for name in names:
        lm = Landmarks(**{k: draw(opt_point) for k in Landmarks.model_fields})
        lv = Level(name=name, landmarks=lm, painful=draw(st.booleans()), notes=draw(text))
        lv.superior.modic_type = draw(st.sampled_from(["none", "1", "2", "3", "1/2", "2/3"]))
        lv.inferior.share_pct = draw(st.none() | st.floats(0, 100))
        plan.levels.append(lv)
        for _ in range(draw(st.integers(0, 2))):
            plan.trajectories.append(Trajectory(level_id=lv.id, side=draw(st.sampled_from(["left", "right"])),
                                                entry_lps=draw(point), bend_lps=draw(opt_point),
                                                target_lps=draw(point), override_reason=draw(text)))
    for _ in range(draw(st.integers(0, 3))):
        plan.measurements.append(Measurement(kind="distance", points_lps=draw(st.lists(point, max_size=3))))
    for _ in range(draw(st.integers(0, 2))):
        plan.review.comments.append(Comment(author=draw(text), text=draw(text)))
    plan.eligibility.answers = draw(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                                                    st.none() | st.booleans() | coord | text, max_size=5))
    plan.settings.target_depth_pct = draw(st.floats(5, 95))
    return plan


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans())
def test_plan_survives_save_and_load_unchanged(tmp_path, plan):
    path = tmp_path / "p.bvnplan"
    save_plan(plan, path)
    loaded = load_plan(path)
    assert loaded == plan
    assert loaded.model_dump(mode="json") == plan.model_dump(mode="json")
    assert loaded.content_hash() == plan.content_hash()


def test_file_states_schema_units_and_frame(tmp_path):
    path = save_plan(sample_plan(), tmp_path / "p.bvnplan")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "bvnplan"
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["units"] == "mm" and data["coordinate_frame"] == "LPS"


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b'{"format": "bvnplan", "schema_version": 1, "levels": [', "invalid JSON at line 1"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b'{"hello": 1}', "not a BVN Planner plan"),
    (b'{"format": "bvnplan"}', "no valid schema_version"),
    (b'{"format": "bvnplan", "schema_version": 99}', "newer BVN Planner"),
    (b'{"format": "bvnplan", "schema_version": 1, "units": "cm"}', "only millimetres"),
    (b'{"format": "bvnplan", "schema_version": 1, "levels": [{"name": "L4", "landmarks": '
     b'{"body_center_lps": [1, 2]}}]}', "levels.0.landmarks.body_center_lps"),
    (b'{"format": "bvnplan", "schema_version": 1, "trajectories": [{"level_id": "x", "entry_lps": [0,0,0], '
     b'"target_lps": [0, 0, "far"]}]}', "trajectories.0.target_lps"),
])
def test_damaged_or_foreign_files_are_refused_with_a_message(tmp_path, content, message):
    path = tmp_path / "bad.bvnplan"
    path.write_bytes(content)
    with pytest.raises(PlanFileError) as info:
        load_plan(path)
    assert message in str(info.value)
    assert "bad.bvnplan" in str(info.value)


def test_truncated_file_is_refused(tmp_path):
    good = save_plan(sample_plan(), tmp_path / "good.bvnplan")
    raw = good.read_bytes()
    for cut in (10, len(raw) // 3, len(raw) - 3):
        bad = tmp_path / "cut.bvnplan"
        bad.write_bytes(raw[:cut])
        with pytest.raises(PlanFileError, match="damaged"):
            load_plan(bad)


def test_missing_file_message(tmp_path):
    with pytest.raises(PlanFileError, match="does not exist"):
        load_plan(tmp_path / "nope.bvnplan")


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = save_plan(sample_plan(), tmp_path / "p.bvnplan")
    before = path.read_bytes()

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    changed = sample_plan()
    changed.author = "someone else"
    with pytest.raises(OSError):
        save_plan(changed, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.bvnplan"]  # no temporary file left behind




def test_killing_a_process_mid_save_never_damages_the_file_and_the_next_start_removes_its_temporaries(tmp_path):
    from planner.safefiles import TEMP_SUFFIX, remove_stale_temporaries

    path = tmp_path / "big.bvnplan"
    save_plan(Plan(author="initial"), path)
    script = SAVE_LOOP.format(root=str(ROOT), path=str(path))
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.15 + 0.11 * attempt)  # land at different points of the write
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        plan = load_plan(path)  # must always load: either the old or a complete new version
        assert plan.author == "initial" or plan.author.startswith("gen-")
        if plan.author != "initial":
            assert len(plan.measurements) == 1000
    # the next start (main.py, the crash-recovery search) removes what the killed saves left behind
    remove_stale_temporaries()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)] == []
    assert load_plan(path).author.startswith(("gen-", "initial"))


def test_migrations_run_in_order(monkeypatch):
    calls = []
    monkeypatch.setattr(storage, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(storage, "MIGRATIONS", {
        1: lambda d: (calls.append(1), {**d, "a": 1})[1],
        2: lambda d: (calls.append(2), {**d, "b": 2})[1],
    })
    out = storage.migrate({"format": "bvnplan", "schema_version": 1})
    assert calls == [1, 2] and out["schema_version"] == 3 and out["a"] == 1 and out["b"] == 2


# ------------------------------------------------------------------ hostile plans (issue 16 items 4, 5)
def _full_plan() -> Plan:
    """A plan with a value in every kind of number field (points, Modic ratios and shares, eligibility
    answers, calibrations, measurements, fluoroscopy landmarks, settings, trajectory parameters)."""
    from planner.plan import FluoroCalibration, FluoroLandmark, ModicSuggestion

    plan = sample_plan()
    lv = plan.levels[1]
    lv.inferior.share_pct = 40.0
    lv.inferior.suggestion = ModicSuggestion(modic_type="1", share_pct=35.0, ratios={"T1": 0.6, "T2": 1.4},
                                             region_center_lps=(0.0, 0.0, -50.0),
                                             region_half_size_mm=(10.0, 10.0, 2.0))
    lv.pedicle_outline_left_lps = [(1.0, 2.0, 3.0), (2.0, 3.0, 4.0), (3.0, 4.0, 5.0)]
    plan.eligibility.answers = {"odi": 42.0, "vas": 6.5, "smoker": False, "note": "x"}
    plan.fluoro_calibrations.append(FluoroCalibration(sop_instance_uid="1.2", mm_per_pixel=0.21))
    plan.fluoro_landmarks.append(FluoroLandmark(sop_instance_uid="1.2", kind="posterior_wall", point_px=(10.0, 20.0)))
    plan.measurements.append(Measurement(kind="distance", points_lps=[(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)],
                                         points_px=[(1.0, 2.0)]))
    return plan


def _float_paths(data, path=()):
    if isinstance(data, bool):
        return
    if isinstance(data, float):
        yield path
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _float_paths(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _float_paths(v, path + (i,))


def _set(data, path, value):
    for p in path[:-1]:
        data = data[p]
    data[path[-1]] = value


def test_nan_or_infinity_in_any_number_field_is_refused_at_load_naming_the_field(tmp_path):
    base = json.loads(storage.plan_to_json(_full_plan()))
    paths = list(_float_paths(base))
    assert len(paths) > 60  # every kind of number field is covered
    kinds = {p[0] for p in paths}
    assert {"levels", "trajectories", "eligibility", "settings", "fluoro_calibrations", "measurements",
            "fluoro_landmarks"} <= kinds
    for i, path in enumerate(paths):
        data = json.loads(json.dumps(base))
        _set(data, path, [float("nan"), float("inf"), float("-inf")][i % 3])
        f = tmp_path / "bad.bvnplan"
        f.write_text(json.dumps(data))  # Python writes NaN / Infinity tokens, as a hostile file would
        with pytest.raises(PlanFileError) as info:
            load_plan(f)
        field = ".".join(str(x) for x in path)
        assert field in str(info.value) and "finite" in str(info.value), str(info.value)
        assert "\n" not in str(info.value)


def test_hostile_plans_end_at_once_with_one_sentence(tmp_path):
    base = json.loads(storage.plan_to_json(sample_plan()))
    cases = {}
    d = json.loads(json.dumps(base))
    d["case"]["patient_name"] = "A" * 10_000_000
    cases["name"] = (json.dumps(d), "case.patient_name")
    d = json.loads(json.dumps(base))
    d["trajectories"] = d["trajectories"] * 3000
    cases["trajectories"] = (json.dumps(d), "trajectories")
    text = json.dumps(base).replace('"schema_version": 1', '"schema_version": ' + "9" * 5000)
    cases["bigint"] = (text, "damaged")
    text = json.dumps(base).replace('"frame_of_reference_uid"', '"x"', 0)
    d = json.loads(json.dumps(base))
    d["levels"][0]["landmarks"]["body_center_lps"] = [1e300, 0, 0]
    cases["far"] = (json.dumps(d), "levels.0.landmarks.body_center_lps.0")
    for name, (content, expected) in cases.items():
        f = tmp_path / f"{name}.bvnplan"
        f.write_text(content)
        t0 = time.monotonic()
        with pytest.raises(PlanFileError) as info:
            load_plan(f)
        assert time.monotonic() - t0 < 5, name
        msg = str(info.value)
        assert expected in msg and f.name in msg and "\n" not in msg and len(msg) < 600, msg
    zero = tmp_path / "zero.bvnplan"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.bvnplan"
    os.mkfifo(fifo)
    for f, what in ((zero, "device"), (fifo, "named pipe")):
        t0 = time.monotonic()
        with pytest.raises(PlanFileError, match=what):
            load_plan(f)
        assert time.monotonic() - t0 < 2


def test_plan_limits_are_documented():
    from planner.plan import PLAN_LIMITS

    doc = (ROOT / "docs" / "architecture.md").read_text()
    for name in PLAN_LIMITS:
        assert name in doc, f"{name} is not documented in docs/architecture.md"


def test_an_edit_beyond_a_limit_is_refused():
    from planner.plan import MAX_SHORT_TEXT

    plan = sample_plan()
    with pytest.raises(ValueError):
        plan.case.patient_name = "x" * (MAX_SHORT_TEXT + 1)
    with pytest.raises(ValueError):
        plan.levels[0].landmarks.body_center_lps = (float("nan"), 0.0, 0.0)


@pytest.mark.parametrize("command", ["check", "report", "sheet", "export-dicom"])
def test_no_command_prints_a_traceback_on_damaged_plans(tmp_path, command, capsys):
    from planner.cli import run_command

    base = json.loads(storage.plan_to_json(_full_plan()))
    plans = {}
    d = json.loads(json.dumps(base))
    d["eligibility"]["answers"]["odi"] = float("nan")
    plans["nan"] = json.dumps(d)
    d = json.loads(json.dumps(base))
    d["case"]["series"] = [{"series_instance_uid": "1.2.3", "path_hint": "/proc/self"}]
    plans["proc_hint"] = json.dumps(d)
    fifo_dir = tmp_path / "with_fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "a.dcm")
    d = json.loads(json.dumps(base))
    d["case"]["series"] = [{"series_instance_uid": "1.2.3", "path_hint": str(fifo_dir / "a.dcm")}]
    plans["fifo_hint"] = json.dumps(d)
    plans["truncated"] = json.dumps(base)[:500]
    plans["bigint"] = json.dumps(base).replace('"frame": 0', '"frame": ' + "7" * 5000)
    for name, text in plans.items():
        f = tmp_path / f"{name}.bvnplan"
        f.write_text(text)
        out = {"check": [], "report": ["-o", str(tmp_path / f"{name}.pdf"), "--no-3d"],
               "sheet": ["-o", str(tmp_path / f"{name}.html")],
               "export-dicom": ["-o", str(tmp_path / f"{name}-dicom"), "--no-3d"]}[command]
        t0 = time.monotonic()
        code = run_command([command, str(f), *out])
        err = capsys.readouterr().err
        assert time.monotonic() - t0 < 60, name
        assert "Traceback" not in err, err
        if name in ("nan", "truncated", "bigint"):
            assert code == 2 and f.name in err, (name, err)
