"""What a teacher answers and how answers are counted: the :class:`Answers` of a session, the :class:`Teacher`
protocol (simulated or human), the simulated teacher behind it, the label counts. The loop that asks and learns
is rlhf.feedback_loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rlhf.segments import Segments


@dataclass
class Answers:
    """A session's queries with the teacher's answers: labels P(B ≻ A) in {0, 0.5, 1}, NaN for a skipped query."""

    seg_a: Segments
    seg_b: Segments
    labels: np.ndarray  # (N,) float32
    session: int


class Teacher(Protocol):
    def submit(self, seg_a: Segments, seg_b: Segments, session: int) -> None:
        """Ask the queries of one session."""

    def collect(self, wait: bool, timeout: float = 0.0) -> list[Answers]:
        """Sessions answered so far (all of them when ``wait``), each returned once."""


class SimulatedAnswers:
    """The B-Pref teacher (which only needs true rewards) behind the :class:`Teacher` protocol: it answers at once."""

    def __init__(self, teacher):
        self.teacher = teacher
        self._answered: list[Answers] = []

    def submit(self, seg_a: Segments, seg_b: Segments, session: int) -> None:
        labels = self.teacher.label(seg_a.true_rewards, seg_b.true_rewards)
        self._answered.append(Answers(seg_a, seg_b, labels, session))

    def collect(self, wait: bool, timeout: float = 0.0) -> list[Answers]:
        answered, self._answered = self._answered, []
        return answered

    def close(self) -> None:
        pass


@dataclass
class FeedbackStats:
    total_labels: int = 0
    skipped: int = 0
    equal: int = 0
    sessions: int = 0

    def as_scalars(self) -> dict[str, float]:
        return {f"feedback/{k}": float(v) for k, v in self.__dict__.items()}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
