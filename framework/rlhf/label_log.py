"""A run's answers as the trainer folds them from the labelling server's event log (rlhf.feedback_client): each
labeller's current answer and when it was given, per query, and what they make together (rlhf.labeller_quality)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rlhf.feedback_client import FeedbackEvent
from rlhf.labeller_quality import answer_count, combine


def _unix_seconds(iso: str) -> float:
    """An event's ISO 8601 UTC time (the server writes ``...Z``) as Unix seconds; NaN if it is not one."""
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return float("nan")


@dataclass
class LabelLog:
    """The current answers of a run, folded from its event log: per query, each labeller's answer (P(B > A), None
    for a skip). A retract undoes that labeller's answer. ``labels`` and ``skipped`` combine the answers of a query
    into one (rlhf.labeller_quality.combine: the majority; a tie is no label)."""

    last_seq: int = 0
    answers: dict[str, dict[str, float | None]] = field(default_factory=dict)
    answered_at: dict[str, dict[str, float]] = field(default_factory=dict)  # query -> labeller -> Unix seconds

    def apply(self, events: Iterable[FeedbackEvent]) -> None:
        for ev in events:
            if ev.seq <= self.last_seq:
                continue  # already applied (e.g. a retried fetch)
            mine = self.answers.setdefault(ev.query_id, {})
            when = self.answered_at.setdefault(ev.query_id, {})
            mine.pop(ev.labeller, None)
            when.pop(ev.labeller, None)
            if ev.type == "label":
                if ev.label not in (0.0, 0.5, 1.0):
                    raise ValueError(f"label event {ev.seq} carries {ev.label!r}, not P(B > A) in {{0, 0.5, 1}}")
                mine[ev.labeller] = float(ev.label)
            elif ev.type == "skip":
                mine[ev.labeller] = None
            if ev.type in ("label", "skip"):
                when[ev.labeller] = _unix_seconds(ev.created_at)
            if not mine:
                del self.answers[ev.query_id]
                self.answered_at.pop(ev.query_id, None)
            self.last_seq = ev.seq

    def answered(self, query_id: str, wanted: int = 1, excluded: Iterable[str] = ()) -> bool:
        """Whether ``wanted`` labellers who are not ``excluded`` answered the query (a label or a skip)."""
        return answer_count(self.answers.get(query_id, {}), excluded) >= wanted

    def time(self, query_id: str, excluded: Iterable[str] = ()) -> float:
        """When the last labeller not ``excluded`` answered the query (Unix seconds; NaN if none did)."""
        drop = set(excluded)
        times = [t for who, t in self.answered_at.get(query_id, {}).items() if who not in drop]
        return max(times) if times else float("nan")

    def label(self, query_id: str, excluded: Iterable[str] = ()) -> float | None:
        """The query's training label (the majority of its labels), None if it has none."""
        return combine(self.answers.get(query_id, {}), excluded)

    @property
    def labels(self) -> dict[str, float]:
        return {q: v for q in self.answers if (v := self.label(q)) is not None}

    @property
    def skipped(self) -> set[str]:
        """Answered queries without a label (skipped, or their labels disagree)."""
        return {q for q in self.answers if self.label(q) is None}
