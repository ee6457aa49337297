"""Feedback schedules: at which environment steps feedback sessions happen.

``num_sessions = total_queries // queries_per_session`` sessions are spread over [start, end):
- linear: evenly spaced;
- exponential: gaps that grow by a factor e^λ from one session to the next, so feedback is dense early, when
  the reward model knows least (λ = ``--teacher-feedback-exponential-lambda``).
The first session is at ``start``, every session is strictly before ``end``, and the steps strictly increase.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Schedule = Literal["linear", "exponential"]


def session_steps(schedule: Schedule, start: int, end: int, num_sessions: int, lam: float = 0.1) -> np.ndarray:
    """(num_sessions,) int64 environment steps of the feedback sessions."""
    span = end - start
    if num_sessions <= 0:
        return np.zeros(0, np.int64)
    if num_sessions > span:
        raise ValueError(f"{num_sessions} feedback sessions do not fit into the {span} steps after step {start}")
    if schedule == "linear":
        gaps = np.ones(num_sessions)
    elif schedule == "exponential":
        if lam <= 0:
            raise ValueError(f"--teacher-feedback-exponential-lambda must be > 0, got {lam}")
        gaps = np.exp(lam * np.arange(num_sessions))
    else:
        raise ValueError(f"--teacher-feedback-schedule must be 'linear' or 'exponential', got {schedule!r}")
    offsets = np.floor(span * np.r_[0.0, np.cumsum(gaps)[:-1]] / gaps.sum()).astype(np.int64)
    # Rounding can merge neighbours when sessions are dense; push each one past its predecessor.
    offsets = np.maximum(offsets, np.arange(num_sessions))
    offsets = np.maximum.accumulate(offsets - np.arange(num_sessions)) + np.arange(num_sessions)
    return start + offsets
