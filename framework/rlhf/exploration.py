"""Unsupervised pre-exploration reward (PEBBLE §4.1): particle-based state entropy.

r_int(s') = log(c + d_k(s')), d_k = Euclidean distance from s' to its k-th nearest neighbour among the visited
states (k = 5 in PEBBLE), normalised by a running std so its scale does not depend on the task. Distances are
computed in batches with torch, against the visited states in chunks: no KD-tree rebuilt every step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlhf.checkpoint import CheckpointError, load_state, save_state


def knn_distance(queries: torch.Tensor, states: torch.Tensor, k: int, chunk_size: int = 16_384) -> torch.Tensor:
    """(B, d) queries, (N, d) states -> (B,) distance to the k-th nearest state (a query in ``states`` counts)."""
    k = min(k, states.shape[0])
    best = None  # (B, k) smallest distances so far
    for start in range(0, states.shape[0], chunk_size):
        d = torch.cdist(queries, states[start : start + chunk_size])  # (B, chunk)
        cand = d if best is None else torch.cat([best, d], dim=1)
        best = torch.topk(cand, k=min(k, cand.shape[1]), dim=1, largest=False).values
    if best is None:
        raise ValueError("knn_distance needs at least one state")
    return best[:, -1]


class RunningStd:
    """Running mean/variance (parallel algorithm of Chan et al.), used to normalise the intrinsic reward."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        batch_mean, batch_var, n = float(x.mean()), float(x.var()), x.size
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> float:
        return float(np.sqrt(self.var))

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = (float(state[k]) for k in ("mean", "var", "count"))


def state_entropy_reward(
    next_obs: torch.Tensor, visited: torch.Tensor, running: RunningStd, k: int = 5, c: float = 1.0
) -> torch.Tensor:
    """(B, d) next states, (N, d) visited states -> (B,) normalised intrinsic reward log(c + d_k) / std."""
    reward = torch.log(c + knn_distance(next_obs, visited, k))
    running.update(reward.cpu().numpy())
    return reward / max(running.std, 1e-8)


def save_exploration(run_dir: Path, agent, buffer, step: int) -> None:
    """The agent and buffer at the end of pre-exploration, for ``--exploration-load`` in a later run."""
    save_state(run_dir / "exploration" / "agent", {"agent": agent.state_dict(), "step": step})
    save_state(run_dir / "exploration" / "replay_buffer", buffer.state_dict())


def load_exploration(args, agent, buffer) -> None:
    """Load ``--path-to-model`` into ``agent`` and ``--path-to-replay-buffer`` into ``buffer`` (a replay buffer
    or a rollout window); ValueError naming the flag when they do not load or do not fit."""
    try:
        agent.load_state_dict(load_state(Path(args.path_to_model).with_suffix(""))["agent"])
        buffer.load_state_dict(load_state(Path(args.path_to_replay_buffer).with_suffix("")))
    except (CheckpointError, KeyError, RuntimeError, ValueError) as e:
        raise ValueError(f"--exploration-load: cannot load the exploration checkpoint: {e}") from e
