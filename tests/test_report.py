"""The plan summary PDF: read back with pypdf and compared with the plan it was built from."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pypdf import PdfReader

from planner import __version__
from planner import checks as checks_mod
from planner.report import PLANNING_AID_STATEMENT, build_report_data, render_report_pdf
from planner.report.data import format_person_name, format_value
from planner.checks import evaluate_trajectory
from planner.report.data import _check_rows
from planner.report.keyimages import AXIAL, SAGITTAL, render_plane
from planner.storage import save_plan
from tests.report_support import (
    CT_SERIES_UID,
    FLUORO_SERIES_UID,
    PATIENT_FAMILY,
    PATIENT_GIVEN,
    PATIENT_ID,
    fluoro_image,
    phantom_volume,
    rich_plan,
)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def volume():
    return phantom_volume()


@pytest.fixture(scope="module")
def report_with_images(tmp_path_factory, volume):
    plan = rich_plan()
    images = {CT_SERIES_UID: volume, FLUORO_SERIES_UID: fluoro_image()}
    data = build_report_data(plan, images)
    path = render_report_pdf(data, tmp_path_factory.mktemp("report") / "summary.pdf")
    reader = PdfReader(str(path))
    pages = [_norm(p.extract_text()) for p in reader.pages]
    data.images = images  # for the tests below
    return plan, data, reader, pages


def test_every_page_has_the_statement_and_page_numbers(report_with_images):
    _, _, reader, pages = report_with_images
    n = len(reader.pages)
    assert n >= 4
    for i, text in enumerate(pages, start=1):
        assert PLANNING_AID_STATEMENT in text, f"page {i} lacks the planning-aid statement"
        assert f"Page {i} of {n}" in text
        assert f"BVN Planner {__version__}" in text


def test_header_levels_and_findings_match_the_plan(report_with_images):
    plan, _, _, pages = report_with_images
    first = pages[0]
    assert format_person_name(plan.case.patient_name) == f"{PATIENT_FAMILY}, {PATIENT_GIVEN}"
    assert f"{PATIENT_FAMILY}, {PATIENT_GIVEN}" in first  # accents survive (Unicode font)
    assert PATIENT_ID in first
    assert "1963-04-17" in first and "Hospital Ñandú" in first
    everything = " ".join(pages)
    for level in plan.levels:
        assert re.search(rf"\b{level.name}\b", everything)
    assert "Levels to treat: L4, L5." in first
    assert "confirmed by physician" in everything  # L4 inferior
    assert "suggestion, not confirmed" in everything and "Assistant suggested type 2" in everything  # L5 superior


def test_eligibility_section_shows_the_evaluation(report_with_images):
    from planner.eligibility import CLASSES, evaluate_eligibility as module_eval

    from planner.display.results import PlanResults

    plan, data, _, pages = report_with_images
    everything = " ".join(pages)
    # the module itself, with the same images: the canal margin is the one the checks measured on them
    reports = PlanResults.for_plan(plan, data.images).reports()
    result = module_eval(plan, [reports[t.id] for t in plan.trajectories])
    assert data.eligibility.overall == result.overall
    assert f"ELIGIBILITY: {result.overall.upper()}" in everything
    assert result.verdict_lines()[0] in everything
    assert "How long has the low back pain lasted?" in everything
    assert "14 months (rule >= 6)" in everything
    for group in result.by_group():
        if any(r.status != "not applicable" for r in result.by_group()[group]):
            assert CLASSES[group].title in everything


def test_each_trajectory_has_its_page_metrics_checks_and_override(report_with_images):
    plan, data, _, pages = report_with_images
    everything = " ".join(pages)
    for traj in plan.trajectories:
        level = plan.level(traj.level_id)
        assert f"Trajectory {level.name} {traj.side}" in everything
        x, y, z = traj.target_lps
        assert f"({x:.1f}, {y:.1f}, {z:.1f}) mm" in everything
        report = evaluate_trajectory(plan, traj, data.images)
        section = next(s for s in data.trajectories if s.trajectory_id == traj.id)
        assert section.overall == report.overall
        assert [(r.key, r.status, r.basis) for r in section.checks] == \
            [(r.key, r.status, r.basis) for r in _check_rows(report)]
        for c in report.checks:
            assert f"{c.label} {c.status.upper()}" in everything
        for m in report.metrics:
            if m.value is not None:
                assert f"{m.label} {m.value:.1f}" in everything
    t2 = plan.trajectories[1]
    assert f"Override reason recorded by the physician: {t2.override_reason}" in everything
    assert "Consider 2 mm more medial entry." in everything  # trajectory comment


def test_key_images_rendered_for_each_trajectory(report_with_images):
    plan, data, reader, _ = report_with_images
    for section in data.trajectories:
        kinds = [k.kind for k in section.key_images]
        assert kinds[:2] == ["sagittal", "axial"]
        assert "3d" in kinds and ("fluoro" in kinds or kinds.count("virtual") == 2)
    # L4's walls are marked on the C-arm image: the plan is drawn on it; L5 has no marks: virtual views
    by_level = {s.level_name: [k.kind for k in s.key_images] for s in data.trajectories}
    assert "fluoro" in by_level["L4"] and "virtual" not in by_level["L4"]
    assert "fluoro" not in by_level["L5"] and by_level["L5"].count("virtual") == 2
    # the level pages carry the pictures (at most six each); the DICOM export carries every key image
    n_images = sum(len(p.images) for p in reader.pages)
    assert n_images == sum(len(p.key_images) for p in data.level_pages)
    assert all(0 < len(p.key_images) <= 6 for p in data.level_pages)


def test_level_pages_name_the_planes_their_reslices_show(report_with_images):
    """The words under a level page's reslices name the plane each one shows: the vertebra's axial plane
    through the pedicle and the sagittal plane along the path (they said "reslice through the tip", which
    neither is)."""
    _, data, _, pages = report_with_images
    level_pages = [p for p in pages if "plan for the procedure room" in p]
    assert level_pages and len(level_pages) == len(data.level_pages)
    for text in level_pages:
        assert "Sagittal plane along the path" in text and "Axial plane through the pedicle" in text, text[:400]
    assert not any("reslice through the tip" in text for text in level_pages)
    for section in data.trajectories:
        sag, ax = section.key_images[:2]
        assert sag.caption.startswith("Sagittal plane through the path") and ax.caption.startswith(
            "Axial plane of the vertebra through the pedicle")


def test_review_settings_and_rf_display_only(report_with_images):
    plan, _, _, pages = report_with_images
    everything = " ".join(pages)
    assert "SIGNED OFF" in everything and "Signed by Dr Reviewer" in everything
    assert "Type 2 change clearly visible on T1." in everything
    assert re.search(r"RF set point \(display only\) 85\.0 °C \[U\]", everything)
    assert "All thresholds used, with sources" in everything
    # row-level tags of a table that mixes confirmed and analogous rows
    assert "[C]; [U]: T12, L6" in everything


def test_sign_off_out_of_date_is_reported(tmp_path):
    plan = rich_plan()
    plan.trajectories[0].target_lps = (0.0, 3.0, -40.0)  # changed after signing
    data = build_report_data(plan, with_3d=False)
    text = _norm(" ".join(p.extract_text() for p in PdfReader(str(render_report_pdf(data, tmp_path / "r.pdf"))).pages))
    assert "SIGN-OFF OUT OF DATE" in text
    assert "OUT OF DATE: the plan changed after signing" in text


def test_report_builds_without_images(tmp_path):
    plan = rich_plan()
    data = build_report_data(plan, None)
    assert not data.images_available
    text = _norm(" ".join(p.extract_text() for p in PdfReader(str(render_report_pdf(data, tmp_path / "r.pdf"))).pages))
    assert "Key images unavailable" in text
    # The 3D view of schematic bodies is still drawn from the landmarks.
    assert all([k.kind for k in s.key_images] == ["3d"] for s in data.trajectories)


@pytest.mark.parametrize("spec", [SAGITTAL, AXIAL], ids=["sagittal", "axial"])
def test_reslice_geometry_matches_the_phantom(volume, spec):
    """The key image puts LPS points where the phantom's anatomy is: the cortical shell (900 HU) of the
    L4 box lies at the pixels the image's own mapping gives for its walls."""
    plan = rich_plan()
    traj = plan.trajectories[0]  # L4 left, target (0, 2, -40)
    key = render_plane(volume, plan, traj, spec)
    gray = np.asarray(key.image.convert("L"), dtype=float)
    # Posterior wall of the L4 box at y = +17.5 (shell 15.5..17.5); anterior at y = -17.5.
    for wall_y in (-16.5, 16.5):
        point = np.array([6.0 if spec is AXIAL else 0.0, wall_y, -46.0 if spec is SAGITTAL else -40.0])
        if spec is AXIAL:
            point[2] = -40.0
        col, row = key.lps_to_px(point)
        inside = np.array([point[0], 0.0, point[2]])
        c2, r2 = key.lps_to_px(inside)
        assert gray[int(round(row)), int(round(col))] > gray[int(round(r2)), int(round(c2))] + 60
    # The active tip marker is drawn at the target's pixel (red).
    col, row = key.lps_to_px(traj.target_lps)
    r, g, b = key.image.getpixel((int(round(col)), int(round(row))))
    assert r > 200 and g < 90 and b < 90


def test_cli_report(tmp_path):
    """Without the images the image checks are unverified: the summary is written once the physician has
    recorded why each trajectory is acceptable."""
    from main import main
    from tests.report_support import reviewed_plan

    plan_path = tmp_path / "p.bvnplan"
    save_plan(reviewed_plan(), plan_path)
    out = tmp_path / "out" / "summary.pdf"
    assert main(["report", str(plan_path), "-o", str(out), "--no-3d"]) == 0
    reader = PdfReader(str(out))
    assert PLANNING_AID_STATEMENT in _norm(reader.pages[0].extract_text())


@pytest.mark.parametrize("command,suffix", [("report", "summary.pdf"), ("sheet", "sheet.pdf"),
                                            ("export-dicom", "dicom")])
def test_documents_refuse_unverified_checks_without_a_reason(tmp_path, capsys, command, suffix):
    """report, sheet and export-dicom exit 2 naming the trajectory whose checks are unverified (no image
    found for the plan) and no reason is recorded; nothing is written."""
    from main import main

    plan = rich_plan()
    plan.trajectories[1].override_reason = "Canal margin 8 mm accepted"
    plan_path = tmp_path / "p.bvnplan"
    save_plan(plan, plan_path)
    out = tmp_path / "out" / suffix
    args = [command, str(plan_path), "-o", str(out)] + (["--no-3d"] if command != "sheet" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "trajectory L4 left" in err and "UNVERIFIED" in err and "L5 right" not in err
    assert "Traceback" not in err
    assert not out.exists()


def test_a_failing_check_function_stops_the_report(tmp_path, capsys, monkeypatch):
    """A TypeError inside evaluate_trajectory is an error of the report command, not a quieter summary
    (issue 13: no retry without images, no guessed signature)."""
    from main import main
    from tests.report_support import reviewed_plan

    plan_path = tmp_path / "p.bvnplan"
    save_plan(reviewed_plan(), plan_path)

    def broken(*args, **kwargs):
        raise TypeError("injected")

    monkeypatch.setattr(checks_mod, "trajectory_path", broken)
    out = tmp_path / "summary.pdf"
    assert main(["report", str(plan_path), "-o", str(out), "--no-3d"]) == 2
    err = capsys.readouterr().err
    assert "TypeError" in err and "injected" in err and "report" in err
    assert not out.exists()


def test_cli_report_damaged_plan_exits_2(tmp_path, capsys):
    from main import main

    bad = tmp_path / "bad.bvnplan"
    bad.write_text('{"format": "bvnplan", "schema_version": 1, "levels": [{"name": 5}]', encoding="utf-8")
    assert main(["report", str(bad), "-o", str(tmp_path / "x.pdf")]) == 2
    err = capsys.readouterr().err
    assert "bad.bvnplan" in err and "damaged" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.pdf").exists()


def test_cli_report_finds_the_images_by_uid(tmp_path, capsys):
    from main import main
    from tests.report_support import write_fluoro_dicom, write_phantom_dicom

    write_phantom_dicom(tmp_path / "images" / "ct", step=4)
    plan_path = tmp_path / "p.bvnplan"
    plan = rich_plan()
    # on this phantom the L4 path meets the canal (the image checks fail): a reason is recorded
    plan.trajectories[0].override_reason = "Reviewed on the phantom"
    save_plan(plan, plan_path)
    out = tmp_path / "r.pdf"
    assert main(["report", str(plan_path), "-o", str(out), "--images", str(tmp_path / "images"), "--no-3d"]) == 0
    captured = capsys.readouterr()
    assert "Series not found: FLUORO_LAT RF Lateral (UID 1.2.826.0.1.3680043.8.498.1003)" in captured.err  # the missing series is named
    reader = PdfReader(str(out))
    text = _norm(" ".join(p.extract_text() for p in reader.pages))
    assert "Key images unavailable" not in text
    # per level: sagittal and axial reslices and, without a C-arm image, the virtual AP and lateral views
    assert sum(len(p.images) for p in reader.pages) == 4 * len(rich_plan().trajectories)
    write_fluoro_dicom(tmp_path / "images" / "rf")
    assert main(["report", str(plan_path), "-o", str(out), "--images", str(tmp_path / "images"), "--no-3d"]) == 0
    assert "Series not found" not in capsys.readouterr().err


def test_images_found_through_the_plans_path_hints(tmp_path):
    """Without --images the plan's path hints are used; relative hints are taken from the plan's folder."""
    from planner.report.sources import find_plan_images
    from tests.report_support import write_phantom_dicom

    write_phantom_dicom(tmp_path / "case" / "ct", step=8)
    plan = rich_plan()
    plan.case.series[0].path_hint = "ct"
    found = find_plan_images(plan, None, tmp_path / "case" / "p.bvnplan")
    assert set(found.images) == {CT_SERIES_UID}
    assert found.missing == ["FLUORO_LAT RF Lateral (UID 1.2.826.0.1.3680043.8.498.1003)"]


def test_fluoroscopy_key_image_shows_the_projected_plan():
    """With the level's walls marked on a lateral image, the target is drawn where it lies between them:
    (target - posterior wall) = 15.5 mm of the 35 mm depth, walls marked at columns 170 and 70, row 128."""
    from planner.report.keyimages import KEY_IMAGE_PX, render_fluoro

    plan = rich_plan()
    l4_traj = plan.trajectories[0]
    key = render_fluoro(plan, FLUORO_SERIES_UID, fluoro_image(), level_id=l4_traj.level_id,
                        trajectory_id=l4_traj.id)
    assert "plan projected" in key.caption
    scale = KEY_IMAGE_PX / 256
    col, row = (170.0 - 15.5 / 35.0 * 100.0) * scale, 128.0 * scale
    r, g, b = key.image.getpixel((int(round(col)), int(round(row))))
    assert r > 200 and g < 90 and b < 90  # the active tip marker
    # The zone (radius 5 mm = 14.3 px at 100 px / 35 mm) is drawn around it, not far away.
    zr, zg, zb = key.image.getpixel((int(round(col)), int(round(row - 9 * scale))))
    assert zr > zb + 40  # orange tint inside the zone
    far = key.image.getpixel((int(round(col)), int(round(row - 30 * scale))))
    assert abs(far[0] - far[2]) < 20  # grey image outside the zone
    # A level without marks gets a note saying which marks are needed.
    l5_traj = plan.trajectories[1]
    from planner.report.keyimages import trajectory_key_images

    _, notes = trajectory_key_images(plan, l5_traj, {FLUORO_SERIES_UID: fluoro_image()})
    assert any("landmarks of L5 are not marked" in n for n in notes)


def test_the_3d_picture_says_when_it_cannot_render_and_a_bug_still_fails(monkeypatch):
    """No offscreen OpenGL on this computer: the report says the 3D view is unavailable; any other error
    (a bug in the picture's code) is not turned into that note."""
    from planner.report import render3d
    from tests.report_support import reviewed_plan

    plan = reviewed_plan()
    traj = plan.trajectories[0]

    def no_gl(*args, **kwargs):
        raise RuntimeError("offscreen rendering produced an empty picture")

    monkeypatch.setattr(render3d, "render_trajectory_3d", no_gl)
    shot, notes = render3d.trajectory_key_image_3d(plan, traj, {})
    assert shot is None and notes == ["3D view unavailable: offscreen rendering failed on this computer."]

    def bug(*args, **kwargs):
        raise TypeError("injected")

    monkeypatch.setattr(render3d, "render_trajectory_3d", bug)
    with pytest.raises(TypeError, match="injected"):
        render3d.trajectory_key_image_3d(plan, traj, {})


def test_one_canal_margin_per_trajectory_in_checks_depth_line_and_eligibility(report_with_images):
    """The summary shows one canal margin per trajectory: the value its check decided on (measured on
    the CT here), in the check row, the depth/margin line and the eligibility item alike."""
    from planner.display.results import PlanResults

    plan, data, _, _ = report_with_images
    reports = PlanResults.for_plan(plan, data.images).reports()
    margin_item = data.eligibility.item("canal_margin")
    for section in data.trajectories:
        rep = reports[section.trajectory_id]
        check = rep.check("canal_margin")
        assert check.basis == "measured" and check.value == pytest.approx(rep.canal_margin_mm)
        assert f"canal margin {rep.canal_margin_mm:.1f} mm" in section.depth_margin
        assert "measured on the image" in section.depth_margin
        if rep.canal_margin_mm < plan.settings.canal_margin_mm:
            assert f"{section.level_name} {section.side} {rep.canal_margin_mm:.1f} mm" in margin_item.detail


def test_passed_checks_list_names_a_length_that_must_be_none_without_a_zero(report_with_images):
    """In a level page's list of passed checks, a check measured as a length of path where there must be none
    (a gap in the vertebra's bone, another bone crossed) is named alone: "Path in the vertebra's bone 0.0 mm"
    read as if the path were 0 mm in bone. Checks with a margin keep their value."""
    plan, data, _, pages = report_with_images
    everything = " ".join(pages)
    passed_lines = re.findall(r"Passed: (.*?)\.(?: |$)", everything)
    named_alone = [c.name for s in data.trajectories for c in s.checks
                   if c.status == "pass" and c.key in ("bone_corridor", "other_bone")]
    assert named_alone and passed_lines, (named_alone, passed_lines)
    for name in set(named_alone):
        assert any(re.search(re.escape(name) + r"(;|$)", line) for line in passed_lines), (name, passed_lines)
    assert "bone 0.0 mm" not in everything and "on the way 0.0 mm" not in everything
    margins = [c.summary for s in data.trajectories for c in s.checks if c.status == "pass" and c.key == "zone"]
    assert margins and all(m.endswith(" mm") for m in margins), margins


def test_a_level_page_whose_text_runs_over_keeps_to_one_page(tmp_path, monkeypatch, volume):
    """A level page whose trajectory text runs a few lines too long (long reasons on a real scan left its last
    line alone on a page of its own) draws its key images smaller and keeps to one page."""
    from planner.report import pdf as pdf_mod

    plan = rich_plan()
    images = {CT_SERIES_UID: volume, FLUORO_SERIES_UID: fluoro_image()}
    shrinking = pdf_mod.LEVEL_IMAGE_SHRINK

    def level_page_count(extra_lines: int, shrink: tuple[float, ...]) -> int:
        monkeypatch.setattr(pdf_mod, "LEVEL_IMAGE_SHRINK", shrink)
        data = build_report_data(plan, images)
        page = data.level_pages[0]
        t = page.trajectories[-1]
        t.depth_margin_conflict = (t.depth_margin_conflict or "") + " Filler line to lengthen the text." * (
            6 * extra_lines)
        data.level_pages = [page]
        pages = [_norm(p.extract_text()) for p in
                 PdfReader(str(render_report_pdf(data, tmp_path / f"r{extra_lines}-{len(shrink)}.pdf"))).pages]
        first = next(i for i, text in enumerate(pages) if "plan for the procedure room" in text)
        return next(i for i, text in enumerate(pages[first + 1:], first + 1) if "Appendix" in text) - first

    assert level_page_count(0, (1.0,)) == 1
    # the fewest extra lines that push the page over at full image size ...
    extra = next(n for n in range(1, 40) if level_page_count(n, (1.0,)) == 2)
    # ... keep to one page with the images drawn smaller
    assert len(shrinking) > 1 and level_page_count(extra, shrinking) == 1


def test_an_angle_that_rounds_to_zero_reads_0_not_minus_0():
    """A cranial angle of -0.02 degrees (a path along the endplate, from the search's floating point) is "0.0°" in the
    report's metrics, as the panel shows it, not "-0.0°"; a real negative angle keeps its sign."""
    assert format_value(-0.02, "deg") == "0.0°"
    assert format_value(-3.24, "deg") == "-3.2°"
    assert format_value(-0.0, "mm") == "0.0 mm"
