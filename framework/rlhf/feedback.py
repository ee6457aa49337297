"""One feedback session, shared by sac_rlhf.py and pref_ppo.py: choose queries, ask the teacher, store the
labels with their segments' data, and train the reward ensemble. Relabelling the agent's buffer is left to the
script, because the replay buffer (SAC) and the rollout buffer (PPO) differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from rlhf.preferences import PreferenceDataset
from rlhf.queries import Strategy, select_queries
from rlhf.replay import ReplayBuffer
from rlhf.reward_model import RewardEnsemble
from rlhf.reward_training import RewardTrainingConfig, train_reward_ensemble
from rlhf.segments import Segments

# (num_queries, pool_size, segment_length, strategy, rng) -> (segments A, segments B)
Selector = Callable[[int, int, int, Strategy, np.random.Generator], tuple[Segments, Segments]]


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


@dataclass
class SessionConfig:
    num_queries: int
    pool_multiplier: int
    segment_length: int
    strategy: Strategy
    val_split: float
    keep_sessions: int | None  # None: keep every label
    training: RewardTrainingConfig


def add_labels(
    prefs: PreferenceDataset, stats: FeedbackStats, answers: Answers, cfg: SessionConfig, rng: np.random.Generator
) -> None:
    """Store the answered queries (skips are counted, not stored)."""
    labels = answers.labels
    answered = ~np.isnan(labels)
    prefs.add(answers.seg_a[answered], answers.seg_b[answered], labels[answered], answers.session, cfg.val_split, rng)
    if cfg.keep_sessions is not None:
        prefs.keep_last_sessions(cfg.keep_sessions)
    stats.total_labels += int(answered.sum())
    stats.skipped += int((~answered).sum())
    stats.equal += int((labels[answered] == 0.5).sum())
    stats.sessions += 1


def feedback_session(
    buffer: ReplayBuffer,
    ensemble: RewardEnsemble,
    optimizer: torch.optim.Optimizer,
    teacher: Teacher,
    prefs: PreferenceDataset,
    stats: FeedbackStats,
    session: int,
    cfg: SessionConfig,
    rng: np.random.Generator,
    selector: Selector | None = None,
    **train_hooks,
) -> dict[str, float]:
    """Select, ask, store, train. Returns reward-model metrics (``reward_model/*``).

    ``selector`` replaces the default selection (which evaluates the ensemble on the candidate pool), e.g. by
    :func:`rlhf.queries.select_from_reward_cache` for a freshly relabelled replay buffer.
    """
    pool = cfg.num_queries * cfg.pool_multiplier
    if selector is None:
        seg_a, seg_b = select_queries(buffer, ensemble, cfg.num_queries, pool, cfg.segment_length, cfg.strategy, rng)
    else:
        seg_a, seg_b = selector(cfg.num_queries, pool, cfg.segment_length, cfg.strategy, rng)
    teacher.submit(seg_a, seg_b, session)
    return learn_from_answers(teacher.collect(wait=True), prefs, stats, ensemble, optimizer, cfg, rng, **train_hooks)


def learn_from_answers(
    answered: list[Answers],
    prefs: PreferenceDataset,
    stats: FeedbackStats,
    ensemble: RewardEnsemble,
    optimizer: torch.optim.Optimizer,
    cfg: SessionConfig,
    rng: np.random.Generator,
    **train_hooks,
) -> dict[str, float]:
    """Store answered sessions' labels and train the reward ensemble on all kept labels (``reward_model/*``)."""
    for answers in answered:
        add_labels(prefs, stats, answers, cfg, rng)
    metrics = train_reward_ensemble(ensemble, optimizer, prefs, cfg.training, rng, **train_hooks)
    return {f"reward_model/{k}": v for k, v in metrics.items()}


def session_config(args) -> SessionConfig:
    """The session settings from the shared feedback flags (rlhf.config.FeedbackArgs)."""
    from rlhf.config import parse_pref_buffer_sessions

    training = RewardTrainingConfig(
        args.teacher_update_epochs,
        args.teacher_batch_strategy,
        args.teacher_minibatch_size,
        args.teacher_feedback_batch_size,
    )
    return SessionConfig(
        args.teacher_feedback_num_queries_per_session,
        args.query_pool_multiplier,
        args.trajectory_length,
        args.preference_sampling,
        args.reward_net_val_split,
        parse_pref_buffer_sessions(args.pref_buffer_size_sessions),
        training,
    )


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
