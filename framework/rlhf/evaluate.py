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
    frame_every: int = 1,
    record_episodes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``episodes`` episodes with ``policy`` (deterministic for evaluation); return (returns, lengths).

    Episode i is reset with seed ``seed + i``, so evaluations are reproducible and comparable across runs.
    ``on_frame(i, frame)`` receives every ``frame_every``-th frame of the first ``record_episodes`` episodes (all
    when None) when the env renders rgb arrays (for videos); rendering only those frames keeps software-rendered
    evaluation videos affordable.
    """
    from rlhf.camera import AgentCamera

    returns, lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        recorder = on_frame if record_episodes is None or i < record_episodes else None
        camera = AgentCamera.of(env) if recorder is not None else None  # kept over the agent as it travels
        while not done:
            if recorder is not None and camera is not None and lengths[i] % frame_every == 0:
                recorder(i, camera.render())
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


def evaluate_policy(
    policy: Callable[[np.ndarray], np.ndarray], env, episodes: int, seed: int, step: int = 0, recorder=None
) -> dict[str, float]:
    """``eval/*`` scalars of ``episodes`` episodes of a deterministic policy on the true return.

    ``recorder`` (an :class:`rlhf.video.EvaluationRecorder`) films the first episode and saves it for ``step``.
    """
    recording = {}
    if recorder is not None:
        recording = {"on_frame": recorder.on_frame, "frame_every": recorder.frame_every, "record_episodes": 1}
    returns, lengths = run_episodes(policy, env, episodes, seed, **recording)
    if recorder is not None:
        recorder.save(step)
    stats = summary(returns)
    return {
        "eval/mean_return": stats["mean"],
        "eval/std_return": stats["std"],
        "eval/min_return": stats["min"],
        "eval/max_return": stats["max"],
        "eval/mean_length": float(lengths.mean()),
    }


class EarlyStopping:
    """Stop when the mean return of the last ``patience`` evaluations crosses ``target_mean`` (reaches it with
    ``greater``; is below it otherwise), or when the return has not improved for ``patience`` evaluations,
    counting only evaluations at or after ``start_step``.

    The threshold rule is the original CleanRLHF's (sac_rlhf.py: the mean of a ``deque(maxlen=early_stop_patience)``
    of evaluation means against ``--early-stopping-mean``, above or below it by ``--enable-greater-or-smaller-check``);
    there it was only applied with ``--early-stopping-step 0`` (a chained comparison, ``step > start == 0``), here
    from ``start_step`` on. A ``target_mean`` of 0 disables it."""

    def __init__(self, enabled: bool, start_step: int, patience: int, target_mean: float, greater: bool = True):
        self.enabled, self.start_step, self.patience, self.target_mean = enabled, start_step, patience, target_mean
        self.greater = greater
        self.best, self.stale = -np.inf, 0
        self.recent: list[float] = []  # the last ``patience`` evaluation returns, oldest first

    def should_stop(self, step: int, mean_return: float) -> bool:
        self.recent = (self.recent + [float(mean_return)])[-self.patience :]
        if not self.enabled or step < self.start_step:
            return False
        if mean_return > self.best:
            self.best, self.stale = mean_return, 0
        else:
            self.stale += 1
        window = float(np.mean(self.recent))
        crossed = window >= self.target_mean if self.greater else window < self.target_mean
        return (self.target_mean != 0 and crossed) or self.stale >= self.patience
