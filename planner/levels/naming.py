"""Level names: the proposed ladder T12-S1 (with a transitional L6 or a sacralised L5), naming from an
anchor, shifting names up and down (the UI's "shift" buttons) and merging a proposal into a plan."""

from __future__ import annotations

from typing import Optional, Sequence

from planner.plan import Level

#: Names the labeller may propose, cranial to caudal (T11 and above are not proposed).
PROPOSED_ORDER: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")


#: The naming sequence used to shift labels up and down (includes neighbours for relabelling).
SHIFT_ORDER: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1", "S2")


TRANSITIONAL = (None, "L6", "sacralised_L5")
#: The measured outlines a level carries besides its landmarks.
OUTLINE_FIELDS = ("pedicle_outline_left_lps", "pedicle_outline_right_lps", "canal_outline_lps")


def shift_level_names(names: Sequence[str], steps: int) -> list[str]:
    """Shift every name ``steps`` places (+1 = one level caudal: L4 -> L5; -1 cranial: L4 -> L3).

    Follows the usual sequence T10..T12, L1..L5, S1, S2; L6 is kept only if it is already in
    ``names`` (a transitional spine). Raises ValueError when a name would leave the sequence."""
    order = [n for n in SHIFT_ORDER if n != "L6" or "L6" in names]
    out = []
    for n in names:
        if n not in order:
            raise ValueError(f"cannot shift unknown level name {n!r}")
        i = order.index(n) + steps
        if not 0 <= i < len(order):
            raise ValueError(f"cannot shift {n} by {steps}: no level name beyond {order[0]}..{order[-1]}")
        out.append(order[i])
    return out


def relabel_levels(levels: Sequence[Level], steps: int) -> list[Level]:
    """Copies of ``levels`` with every name shifted (ids, landmarks and findings kept)."""
    names = shift_level_names([lv.name for lv in levels], steps)
    return [lv.model_copy(update={"name": n}, deep=True) for lv, n in zip(levels, names)]


def merge_proposal(existing: Sequence[Level], proposed: Sequence[Level]) -> list[Level]:
    """The proposal merged into the plan's levels: a proposed level that already exists by name keeps
    its id (so its trajectories stay), findings, flags and notes, and takes the new landmarks; its pedicle
    and canal outlines are kept where it has them (drawn or accepted before) and taken from the proposal
    where it has none; existing levels that were not proposed are kept as they are."""
    by_name = {lv.name: lv for lv in existing}
    out: list[Level] = []
    for new in proposed:
        old = by_name.pop(new.name, None)
        if old is None:
            out.append(new.model_copy(deep=True))
            continue
        update = {"landmarks": new.landmarks.model_copy(deep=True)}
        for f in OUTLINE_FIELDS:
            if not getattr(old, f):
                update[f] = list(getattr(new, f))
        out.append(old.model_copy(update=update, deep=True))
    out.extend(lv.model_copy(deep=True) for lv in by_name.values())
    return out


def names_from_anchor(count_above: int, anchor: str = "S1", transitional: Optional[str] = None) -> list[str]:
    """Names cranial to caudal for ``count_above`` vertebrae above an anchor, then the anchor."""
    seq = name_sequence(transitional)
    i = seq.index(anchor)
    lo = i - count_above
    return [seq[j] if j >= 0 else "" for j in range(lo, i + 1)]


def name_sequence(transitional: Optional[str]) -> list[str]:
    """Full caudal-ending name sequence for the chosen anatomy."""
    if transitional not in TRANSITIONAL:
        raise ValueError(f"transitional must be one of None, 'L6', 'sacralised_L5', not {transitional!r}")
    seq = ["T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    if transitional == "L6":
        seq.append("L6")
    return seq + ["S1", "S2"]
