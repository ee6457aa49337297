"""RUNE (Liang et al. 2022, "Reward Uncertainty for Exploration in Preference-based RL"): the agent is trained on
r̂_mean + β_t · r̂_std, the ensemble's mean reward plus a bonus where its members disagree, with
β_t = β_0 (1 − ρ)^t decaying with the environment step t at which the reward is used (SPEC §7).
"""

from __future__ import annotations

import numpy as np
import torch


def rune_beta(beta0: float, decay: float, step) -> np.ndarray | float:
    """β_t = β_0 (1 − ρ)^t (a scalar, or an array for an array of steps t)."""
    return beta0 * (1.0 - decay) ** np.asarray(step, np.float64)


class Rune:
    """The reward an agent trains on: r̂_mean, plus RUNE's bonus when ``enabled`` (``--rune``)."""

    def __init__(self, enabled: bool, beta0: float, decay: float):
        self.enabled, self.beta0, self.decay = enabled, beta0, decay

    @classmethod
    def from_args(cls, args) -> Rune:
        """From the flags of rlhf.config.RuneArgs."""
        return cls(args.rune, args.rune_beta, args.rune_beta_decay)

    def reward(self, mean, std, step):
        """r̂_mean (+ β_t · r̂_std); torch tensors with one ``step`` (SAC's batch), or arrays with ``step`` an array
        broadcasting against them (a PPO rollout's (T, N) steps, each transition its own t)."""
        if not self.enabled:
            return mean
        if isinstance(mean, torch.Tensor):
            return mean + float(rune_beta(self.beta0, self.decay, step)) * std
        return (mean + rune_beta(self.beta0, self.decay, step) * std).astype(np.float32)
