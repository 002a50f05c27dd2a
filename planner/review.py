"""Review of saved plans by fellows: sign-off status, comments by anchor, the audit trail as a table.

Editing (comments, sign-off) goes through PlanDocument (allowed in read-only mode); this module only
reads the plan, so the GUI, the reports and the command line describe the review the same way.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Optional

from planner.plan import Comment, Plan, SignOff


@dataclass(frozen=True)
class SignOffStatus:
    signoff: SignOff
    current: bool

    def describe(self) -> str:
        state = "current" if self.current else "OUT OF DATE: the plan changed after signing"
        return f"Signed by {self.signoff.reviewer} ({self.signoff.role}) at {self.signoff.signed_at}: {state}"


def signoff_statuses(plan: Plan) -> list[SignOffStatus]:
    digest = plan.content_hash()
    return [SignOffStatus(s, s.content_hash == digest) for s in plan.review.signoffs]


def review_state(plan: Plan) -> str:
    """One of "not reviewed", "signed off", "sign-off out of date"."""
    statuses = signoff_statuses(plan)
    if not statuses:
        return "not reviewed"
    return "signed off" if statuses[-1].current else "sign-off out of date"


def anchor_label(plan: Plan, comment: Comment) -> str:
    """A readable name for what a comment is attached to."""
    if comment.anchor_kind == "level":
        lv = next((lv for lv in plan.levels if lv.id == comment.anchor_id), None)
        return f"Level {lv.name}" if lv else "Level (removed)"
    if comment.anchor_kind == "trajectory":
        t = next((t for t in plan.trajectories if t.id == comment.anchor_id), None)
        if t is None:
            return "Trajectory (removed)"
        lv = next((lv for lv in plan.levels if lv.id == t.level_id), None)
        return f"Trajectory {lv.name if lv else '?'} {t.side}"
    return "Plan"


def comments_for(plan: Plan, anchor_kind: str, anchor_id: Optional[str] = None) -> list[Comment]:
    return [c for c in plan.review.comments
            if c.anchor_kind == anchor_kind and (anchor_id is None or c.anchor_id == anchor_id)]


AUDIT_COLUMNS = ("at", "user", "action", "detail")


def audit_to_csv(plan: Plan) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(AUDIT_COLUMNS)
    for e in plan.audit:
        w.writerow([e.at, e.user, e.action, e.detail])
    return buf.getvalue()


def audit_to_json(plan: Plan) -> str:
    return json.dumps([e.model_dump(mode="json") for e in plan.audit], indent=1, ensure_ascii=False)
