"""The B-Pref simulated teacher (Lee et al. 2021, "B-Pref: Benchmarking Preference-Based RL").

For each query (A, B) with true per-step rewards:
1. skip when both returns are below δ_skip (the answer is not a label and is not stored);
2. label 0.5 (equally good) when |R_A − R_B| < δ_equal;
3. otherwise, with β < 0 pick the higher myopic return R' = Σ_t γ^{H−1−t} r_t (last step weight 1), with β ≥ 0
   sample y ~ Bernoulli(σ(β (R'_B − R'_A)));
4. flip the strict label with probability ε.
Skip and equality use the undiscounted returns R, as in B-Pref. Labels are P(B ≻ A): 1 = B better.

B-Pref's "skip" and "equal" teachers set δ relative to the scale of the task's returns; here that scale is the mean
|segment return| of the queried batch, and the presets use fraction 0.1 / 0.1 of it (absolute δ flags add to it).
A negative δ turns its rule off altogether ("never"), preset fraction included: the original CleanRLHF's scripts
pass δ_skip = -10000000 to mean "never skip" (their returns never fall that low).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Preset = Literal["oracle", "stochastic", "myopic", "mistake", "skip", "equal"]

PRESETS: dict[str, dict[str, float]] = {
    "oracle": {"beta": -1.0, "gamma": 1.0, "epsilon": 0.0, "skip_fraction": 0.0, "equal_fraction": 0.0},
    "stochastic": {"beta": 1.0, "gamma": 1.0, "epsilon": 0.0, "skip_fraction": 0.0, "equal_fraction": 0.0},
    "myopic": {"beta": -1.0, "gamma": 0.9, "epsilon": 0.0, "skip_fraction": 0.0, "equal_fraction": 0.0},
    "mistake": {"beta": -1.0, "gamma": 1.0, "epsilon": 0.1, "skip_fraction": 0.0, "equal_fraction": 0.0},
    "skip": {"beta": -1.0, "gamma": 1.0, "epsilon": 0.0, "skip_fraction": 0.1, "equal_fraction": 0.0},
    "equal": {"beta": -1.0, "gamma": 1.0, "epsilon": 0.0, "skip_fraction": 0.0, "equal_fraction": 0.1},
}


@dataclass
class SimulatedTeacher:
    rng: np.random.Generator
    beta: float = -1.0
    gamma: float = 1.0
    epsilon: float = 0.0
    delta_skip: float = 0.0
    delta_equal: float = 0.0
    skip_fraction: float = 0.0
    equal_fraction: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"--teacher-sim-epsilon must be in [0, 1], got {self.epsilon}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"--teacher-sim-gamma must be in (0, 1], got {self.gamma}")
        if np.isnan(self.delta_skip) or np.isnan(self.delta_equal):
            raise ValueError("--teacher-sim-delta-skip and --teacher-sim-delta-equal must be numbers, got nan")

    @classmethod
    def from_preset(cls, preset: Preset, rng: np.random.Generator, **overrides: float | None) -> SimulatedTeacher:
        """A preset's knobs, with any explicitly given (not None) knob taking precedence."""
        if preset not in PRESETS:
            raise ValueError(f"--teacher-sim-preset must be one of {sorted(PRESETS)}, got {preset!r}")
        knobs = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(rng=rng, **knobs)

    def label(self, rewards_a: np.ndarray, rewards_b: np.ndarray) -> np.ndarray:
        """(N, H) true rewards of A and B (0 on padding) -> (N,) labels P(B ≻ A), NaN where the query is skipped."""
        rewards_a = np.asarray(rewards_a, np.float64)
        rewards_b = np.asarray(rewards_b, np.float64)
        ret_a, ret_b = rewards_a.sum(1), rewards_b.sum(1)
        scale = float(np.mean(np.abs(np.concatenate([ret_a, ret_b])))) if len(ret_a) else 0.0
        skip_threshold = self.delta_skip + self.skip_fraction * scale
        equal_threshold = self.delta_equal + self.equal_fraction * scale

        horizon = rewards_a.shape[1]
        weights = self.gamma ** np.arange(horizon - 1, -1, -1)  # γ^{H-1-t}: the last step weighs 1
        diff = (rewards_b - rewards_a) @ weights  # R'_B − R'_A
        if self.beta < 0:
            labels = (diff > 0).astype(np.float64)
            labels[diff == 0] = 0.5
        else:
            p_b = 1.0 / (1.0 + np.exp(-self.beta * diff))
            labels = (self.rng.random(len(diff)) < p_b).astype(np.float64)
        flip = self.rng.random(len(labels)) < self.epsilon
        strict = labels != 0.5
        labels[flip & strict] = 1.0 - labels[flip & strict]
        if self.delta_equal >= 0 and equal_threshold > 0:
            labels[np.abs(ret_a - ret_b) < equal_threshold] = 0.5
        if self.delta_skip >= 0 and skip_threshold > 0:
            labels[(ret_a < skip_threshold) & (ret_b < skip_threshold)] = np.nan
        return labels.astype(np.float32)
