"""What a teacher answers and how answers are counted: the :class:`Answers` of a session, the :class:`Teacher`
protocol (simulated or human), the simulated teacher behind it, the label counts. The loop that asks and learns
is rlhf.feedback_loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rlhf.segments import Segments


def query_id(session: int, index: int) -> str:
    """The id of the ``index``-th query of ``session``: on the labelling server and in preference datasets."""
    return f"s{session:04d}-q{index:03d}"


def repeat_id(session: int, index: int) -> str:
    """The id of the ``index``-th repeat asked in ``session`` (an earlier labelled pair asked again)."""
    return f"s{session:04d}-r{index:03d}"


@dataclass
class Answers:
    """A session's queries with the teacher's answers: labels P(B ≻ A) in {0, 0.5, 1}, NaN for a skipped query."""

    seg_a: Segments
    seg_b: Segments
    labels: np.ndarray  # (N,) float32
    session: int
    labellers: list[str] | None = None  # who answered each query (None: not known)
    times: np.ndarray | None = None  # (N,) float64 Unix seconds of each answer (None: not known)


class Teacher(Protocol):
    def submit(self, seg_a: Segments, seg_b: Segments, session: int) -> None:
        """Ask the queries of one session."""

    def collect(self, wait: bool, timeout: float = 0.0) -> list[Answers]:
        """Sessions answered so far (all of them when ``wait``), each returned once."""


class SimulatedAnswers:
    """The B-Pref teacher behind the :class:`Teacher` protocol: it answers at once, judging segments by their true
    rewards, or by ``rewards(segments) -> (N, H)`` when given (a behaviour teacher: rlhf.custom_reward).
    ``name``: the labeller recorded with its labels (rlhf.pref_dataset)."""

    def __init__(self, teacher, name: str = "simulated", rewards=None):
        self.teacher, self.name, self.rewards = teacher, name, rewards
        self._answered: list[Answers] = []

    def submit(self, seg_a: Segments, seg_b: Segments, session: int) -> None:
        if self.rewards is None:
            labels = self.teacher.label(seg_a.true_rewards, seg_b.true_rewards)
        else:
            labels = self.teacher.label(self.rewards(seg_a), self.rewards(seg_b))
        n = len(labels)
        self._answered.append(Answers(seg_a, seg_b, labels, session, [self.name] * n, np.full(n, time.time())))

    def collect(self, wait: bool, timeout: float = 0.0) -> list[Answers]:
        answered, self._answered = self._answered, []
        return answered

    @property
    def criterion(self):
        """What it judges by in place of the true rewards (``rewards``; None: the true rewards)."""
        return self.rewards

    def close(self) -> None:
        if self.rewards is not None:
            self.rewards.close()


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
