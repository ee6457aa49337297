"""Segments: H consecutive transitions of one episode, the unit a teacher compares.

A segment whose episode terminated before its H steps were over is padded after the terminal step: the padding
repeats the last observation/action/next observation/physics state (a frozen last frame in clips), has zero
true reward, and is masked out of the reward model's sum. That is an absorbing state with reward 0, consistent with no bootstrapping
after termination (SPEC §5). An episode cut by a time limit shorter than H is padded the same way; then every
segment of the task is one whole, equally padded episode, so comparisons stay fair.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass
class Segments:
    """A batch of N segments of length H."""

    obs: np.ndarray  # (N, H, obs_dim) float32
    actions: np.ndarray  # (N, H, act_dim) float32
    true_rewards: np.ndarray  # (N, H) float32, 0 on padding
    mask: np.ndarray  # (N, H) bool, False on padding
    physics_states: np.ndarray  # (N, H, state_dim) float32, to re-render the segment
    # (N, H, obs_dim) float32: the observation after each step's action (a behaviour teacher's criterion may need
    # it: rlhf.custom_reward). Segments made without it (by hand, or stored before it was kept) get each step's
    # successor within the segment, the last step's own observation for the last step.
    next_obs: np.ndarray | None = None

    def __post_init__(self):
        if self.next_obs is None:
            self.next_obs = np.concatenate([self.obs[:, 1:], self.obs[:, -1:]], axis=1)

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def length(self) -> int:
        return int(self.obs.shape[1])

    def __getitem__(self, index) -> Segments:
        return Segments(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def true_returns(self) -> np.ndarray:
        """(N,) sum of true rewards over the valid steps."""
        return (self.true_rewards * self.mask).sum(axis=1)

    @staticmethod
    def concatenate(parts: list[Segments]) -> Segments:
        return Segments(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Segments)})

    def as_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}{f.name}": getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> Segments:
        return Segments(**{f.name: np.asarray(arrays[f"{prefix}{f.name}"]) for f in fields(Segments)
                           if f"{prefix}{f.name}" in arrays or f.name != "next_obs"})  # fmt: skip

    @staticmethod
    def empty(length: int, obs_dim: int, act_dim: int, state_dim: int) -> Segments:
        return Segments(
            obs=np.zeros((0, length, obs_dim), np.float32),
            actions=np.zeros((0, length, act_dim), np.float32),
            true_rewards=np.zeros((0, length), np.float32),
            mask=np.zeros((0, length), bool),
            physics_states=np.zeros((0, length, state_dim), np.float32),
            next_obs=np.zeros((0, length, obs_dim), np.float32),
        )
