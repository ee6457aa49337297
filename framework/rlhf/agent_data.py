"""The agent's own data as the feedback loop sees it (rlhf.feedback_loop.AgentData), for the two kinds of agent:

- :class:`ReplayData` (PEBBLE): a replay buffer whose reward cache holds every member's r̂ of every transition.
  Queries are scored from the cache, every reward update relabels the whole filled buffer, and new transitions
  are labelled in batches of :data:`RELABEL_PENDING_AT` before SAC samples them.
- :class:`WindowData` (PrefPPO): the window of recent rollouts; queries are scored by the ensemble, and each
  rollout is relabelled by the script before GAE, so an update only resets what fit the old reward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from rlhf.queries import Strategy, select_from_reward_cache, select_queries
from rlhf.replay import ReplayBuffer
from rlhf.reward_model import RewardEnsemble, predict_member_rewards
from rlhf.rollout import RolloutWindow
from rlhf.segments import Segments

# New transitions get the current ensemble's r̂ in batches of this many: one batched network call instead of one
# per step. Until then SAC samples only the older, labelled transitions (the newest < 64 wait a few steps).
RELABEL_PENDING_AT = 64


class ReplayData:
    def __init__(self, rb: ReplayBuffer, ensemble: RewardEnsemble, after_first_update: Callable[[], None] | None):
        """``after_first_update``: what to reset once the reward means something (PEBBLE: the critics, which
        estimated the exploration reward)."""
        self.rb, self.ensemble, self.after_first_update = rb, ensemble, after_first_update

    def reward_fn(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return predict_member_rewards(self.ensemble, obs, actions)  # (n, M), cached in the buffer

    def select(self, n: int, candidates: int, length: int, strategy: Strategy, rng: np.random.Generator):
        self.rb.relabel_pending(self.reward_fn)  # the cache then holds the current ensemble's r̂ for every step
        return select_from_reward_cache(self.rb, n, candidates, length, strategy, rng)

    def newest(self, n: int) -> Segments:
        return self.rb.newest_segment(n)

    def reward_updated(self, updates: int) -> None:
        self.rb.relabel(self.reward_fn)
        if updates == 1 and self.after_first_update is not None:
            self.after_first_update()

    def label_new_transitions(self) -> None:
        """Give the newest transitions the learned reward, in batches (call before sampling)."""
        if self.rb.pending >= RELABEL_PENDING_AT:
            self.rb.relabel_pending(self.reward_fn)


class WindowData:
    def __init__(self, window: RolloutWindow, ensemble: RewardEnsemble, after_first_update: Callable[[], None]):
        """``after_first_update``: PrefPPO resets its reward scaler (the learned reward has its own scale)."""
        self.window, self.ensemble, self.after_first_update = window, ensemble, after_first_update
        self.select = functools.partial(select_queries, window, ensemble)

    def newest(self, n: int) -> Segments:
        """One segment per sub-environment, of its newest n / N transitions (the envs step in lockstep)."""
        per_env = min(max(1, n // len(self.window.buffers)), *(rb.size for rb in self.window.buffers))
        return Segments.concatenate([rb.newest_segment(per_env) for rb in self.window.buffers])

    def reward_updated(self, updates: int) -> None:
        if updates == 1:
            self.after_first_update()
