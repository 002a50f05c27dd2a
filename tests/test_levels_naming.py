"""Level names: shifting names, relabelling levels and naming from an anchor (planner.levels.naming)."""

from __future__ import annotations

import pytest

from planner.levels import names_from_anchor, relabel_levels, shift_level_names
from planner.plan import Level


def test_shift_level_names():
    assert shift_level_names(["L3", "L4", "L5"], +1) == ["L4", "L5", "S1"]
    assert shift_level_names(["L1", "L2"], -1) == ["T12", "L1"]
    assert shift_level_names(["L5", "L6", "S1"], -1) == ["L4", "L5", "L6"]  # L6 kept on a transitional spine
    with pytest.raises(ValueError):
        shift_level_names(["S2"], +1)
    with pytest.raises(ValueError):
        shift_level_names(["Q1"], +1)


def test_relabel_levels_keeps_ids_and_findings():
    levels = [Level(name="L4", painful=True), Level(name="L5")]
    levels[0].inferior.modic_type = "1"
    out = relabel_levels(levels, +1)
    assert [lv.name for lv in out] == ["L5", "S1"]
    assert [lv.id for lv in out] == [lv.id for lv in levels]
    assert out[0].painful and out[0].inferior.modic_type == "1"
    assert levels[0].name == "L4"  # originals untouched


def test_names_from_anchor():
    assert names_from_anchor(2) == ["L4", "L5", "S1"]
    assert names_from_anchor(2, transitional="L6") == ["L5", "L6", "S1"]
    assert names_from_anchor(1, "L5", transitional="sacralised_L5") == ["L4", "L5"]
