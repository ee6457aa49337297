"""Query selection (PEBBLE §4.2): which pairs of segments to ask the teacher about.

From a pool of candidate pairs drawn uniformly from the replay buffer (PEBBLE's ``large_batch``):
- ``uniform``: the first k candidates (random pairs);
- ``disagree``: the k pairs with the largest std over members of P_m(B ≻ A);
- ``entropy``: the k pairs with the largest binary entropy of the ensemble-mean P(B ≻ A), i.e. closest to the
  decision boundary.
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import torch

from rlhf.replay import ReplayBuffer
from rlhf.reward_model import RewardEnsemble, predict_logits
from rlhf.segments import Segments

Strategy = Literal["uniform", "disagree", "entropy"]


class SegmentSource(Protocol):
    """What :func:`select_queries` draws candidates from: a replay buffer (SAC) or a rollout window (PPO)."""

    def sample_segments(self, n: int, length: int, rng: np.random.Generator) -> Segments: ...


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) in nats, 0 at p ∈ {0, 1}."""
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))  # xlogy(0, 0) = 0, no clamping


def selection_scores(probs: torch.Tensor, strategy: Strategy) -> torch.Tensor:
    """(M, N) member probabilities P_m(B ≻ A) -> (N,) scores, higher = more informative."""
    if strategy == "disagree":
        return probs.std(0, unbiased=False)
    if strategy == "entropy":
        return binary_entropy(probs.mean(0))
    raise ValueError(f"no score for strategy {strategy!r}")


def select_top(probs: torch.Tensor, k: int, strategy: Strategy) -> np.ndarray:
    """Indices of the k highest-scoring candidates, best first."""
    scores = selection_scores(probs, strategy)
    return torch.topk(scores, k=min(k, scores.numel())).indices.cpu().numpy()


def select_queries(
    buffer: SegmentSource,
    ensemble: RewardEnsemble,
    num_queries: int,
    pool_size: int,
    length: int,
    strategy: Strategy,
    rng: np.random.Generator,
) -> tuple[Segments, Segments]:
    """Draw ``pool_size`` candidate pairs and keep ``num_queries`` of them by ``strategy``."""
    if strategy == "uniform":
        pool_size = num_queries
    seg_a = buffer.sample_segments(pool_size, length, rng)
    seg_b = buffer.sample_segments(pool_size, length, rng)
    if strategy == "uniform":
        return seg_a, seg_b
    logits = predict_logits(ensemble, seg_a.obs, seg_a.actions, seg_a.mask, seg_b.obs, seg_b.actions, seg_b.mask)
    keep = select_top(torch.sigmoid(logits), num_queries, strategy)
    return seg_a[keep], seg_b[keep]


def select_from_reward_cache(
    buffer: ReplayBuffer,
    num_queries: int,
    pool_size: int,
    length: int,
    strategy: Strategy,
    rng: np.random.Generator,
) -> tuple[Segments, Segments]:
    """Like :func:`select_queries`, scoring the pool from the buffer's cached per-member rewards.

    Exact when the buffer was relabelled with the current ensemble and has no pending transitions (true at the
    start of a session): the cache holds the same eval-mode r̂_m(s, a) the networks would compute, so scoring
    10 k candidate pairs is a gather and a sum instead of 1.3 M network evaluations per member.
    """
    if buffer.pending:
        raise RuntimeError("relabel the pending transitions before selecting from the reward cache")
    starts, last = buffer.segment_starts(length)
    if len(starts) == 0:
        raise RuntimeError(f"the replay buffer holds no segment of length {length} yet")
    pool = num_queries if strategy == "uniform" else pool_size
    pick_a, pick_b = rng.integers(0, len(starts), size=pool), rng.integers(0, len(starts), size=pool)
    if strategy != "uniform":
        logits = buffer.segment_member_returns(starts[pick_b], last[pick_b], length) - buffer.segment_member_returns(
            starts[pick_a], last[pick_a], length
        )  # (M, pool)
        keep = select_top(torch.sigmoid(torch.from_numpy(logits)), num_queries, strategy)
        pick_a, pick_b = pick_a[keep], pick_b[keep]
    return buffer.segments(starts[pick_a], last[pick_a], length), buffer.segments(starts[pick_b], last[pick_b], length)
