"""Evaluation of a policy on the true environment return."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def run_episodes(
    policy: Callable[[np.ndarray], np.ndarray],
    env,
    episodes: int,
    seed: int,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``episodes`` episodes with ``policy`` (deterministic for evaluation); return (returns, lengths).

    Episode i is reset with seed ``seed + i``, so evaluations are reproducible and comparable across runs.
    ``on_frame(i, frame)`` receives rendered frames when the env renders rgb arrays (for videos).
    """
    returns, lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            if on_frame is not None:
                on_frame(i, env.render())
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            returns[i] += float(reward)
            lengths[i] += 1
            done = terminated or truncated
    return returns, lengths


def summary(returns: np.ndarray) -> dict[str, float]:
    """Mean, std, 95 % confidence interval of the mean (normal approximation), min, max, median."""
    n = len(returns)
    mean = float(np.mean(returns))
    std = float(np.std(returns, ddof=1)) if n > 1 else 0.0
    half = 1.96 * std / np.sqrt(n) if n > 1 else 0.0
    return {
        "mean": mean,
        "std": std,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "min": float(np.min(returns)),
        "max": float(np.max(returns)),
        "median": float(np.median(returns)),
    }
