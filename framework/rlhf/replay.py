"""Replay buffer that keeps the true reward, episode structure and render state of every transition.

The learned reward is never baked in: each ensemble member's r̂ (``member_rewards``) is relabelled in bulk after
each reward update and, for transitions added since, in small chunks (:meth:`ReplayBuffer.relabel_pending`).
Until a new transition is relabelled it is not sampled for SAC updates, so no per-step reward inference is
needed. Keeping every member's reward (not only the mean) gives RUNE its std per sampled batch and lets query
selection score thousands of candidate segments from this cache instead of running the networks again.
``terminated`` stops bootstrapping, ``truncated`` (time limit) does not; reset steps are never stored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rlhf.segments import Segments

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (obs (n, o), act (n, a)) -> member rewards (n, M)

_ARRAYS = (
    "obs",
    "next_obs",
    "actions",
    "true_rewards",
    "member_rewards",
    "terminated",
    "truncated",
    "episode_id",
    "episode_step",
    "physics_states",
)


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, act_dim: int, state_dim: int, reward_members: int = 1):
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.true_rewards = np.zeros(capacity, np.float32)
        self.member_rewards = np.zeros((capacity, reward_members), np.float32)  # r̂_m(s, a) of each member
        self.terminated = np.zeros(capacity, bool)
        self.truncated = np.zeros(capacity, bool)
        self.episode_id = np.zeros(capacity, np.int64)
        self.episode_step = np.zeros(capacity, np.int64)
        # rlhf.envs.get_physics_state of the step's observation: the episode seed, the state's true length and the
        # state padded to a width that fits every episode of the task (the manipulation tasks' models shrink at
        # reset, issue 13). float32 is enough: re-rendered frames were pixel-identical to the live ones (env_check).
        self.physics_states = np.zeros((capacity, state_dim), np.float32)
        self.pos = 0  # next write index
        self.size = 0  # filled transitions
        self.pending = 0  # newest transitions whose learned reward is not computed yet

    def add(self, obs, action, next_obs, true_reward, terminated, truncated, episode_id, episode_step, physics_state):
        i = self.pos
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.actions[i] = action
        self.true_rewards[i] = true_reward
        self.terminated[i] = terminated
        self.truncated[i] = truncated
        self.episode_id[i] = episode_id
        self.episode_step[i] = episode_step
        self.physics_states[i] = physics_state
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.pending = min(self.pending + 1, self.size)

    def chronological(self) -> np.ndarray:
        """Physical indices of the filled part, oldest first."""
        start = self.pos if self.size == self.capacity else 0
        return (start + np.arange(self.size)) % self.capacity

    # -- learned reward -------------------------------------------------------------------------------------------
    def relabel(self, reward_fn: RewardFn, chunk_size: int = 4096) -> None:
        """Recompute the learned reward of every filled transition, in batches.

        Batches of a few thousand transitions keep each layer's activations in the CPU's cache: relabelling 1 M
        transitions with the 3 x 256 ensemble took 4.2 s in chunks of 4 096 and 9.4 s in chunks of 65 536
        (benchmarks/throughput.py, 2 cores)."""
        self._relabel_range(None, reward_fn, chunk_size)  # physical [0, size) is exactly the filled part
        self.pending = 0

    def relabel_pending(self, reward_fn: RewardFn) -> None:
        """Compute the learned reward of the transitions added since the last relabel."""
        if self.pending:
            idx = (self.pos - self.pending + np.arange(self.pending)) % self.capacity
            self._relabel_range(idx, reward_fn, chunk_size=len(idx))
            self.pending = 0

    def _relabel_range(self, idx: np.ndarray | None, reward_fn: RewardFn, chunk_size: int) -> None:
        n = self.size if idx is None else len(idx)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            sel = slice(start, stop) if idx is None else idx[start:stop]
            self.member_rewards[sel] = reward_fn(self.obs[sel], self.actions[sel])

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A uniform batch from the transitions whose learned reward is up to date."""
        ready = self.size - self.pending
        if ready <= 0:
            raise RuntimeError("no relabelled transitions to sample; relabel the buffer first")
        start = self.pos if self.size == self.capacity else 0
        idx = (start + rng.integers(0, ready, size=batch_size)) % self.capacity
        members = self.member_rewards[idx]  # (B, M)
        return {
            "obs": self.obs[idx],
            "actions": self.actions[idx],
            "next_obs": self.next_obs[idx],
            "reward_mean": members.mean(1),
            "reward_std": members.std(1),
            "true_rewards": self.true_rewards[idx],
            "terminated": self.terminated[idx],
        }

    def sample_any(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A uniform batch over all filled transitions, with true rewards (exploration and the SAC baseline)."""
        idx = rng.integers(0, self.size, size=batch_size)
        return {
            "obs": self.obs[idx],
            "actions": self.actions[idx],
            "next_obs": self.next_obs[idx],
            "true_rewards": self.true_rewards[idx],
            "terminated": self.terminated[idx],
        }

    # -- segments -------------------------------------------------------------------------------------------------
    def segment_starts(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Valid segment starts as (chronological start, chronological last valid step), each (n,).

        A start is valid when its H steps lie in one episode, or when it is the first step of an episode that
        ended in fewer than H steps (that segment is padded): terminated early, or cut by a time limit shorter than
        H (a task whose episodes are all shorter than H, e.g. Pusher's 100 steps with the original CleanRLHF's
        H = 128: each segment is then one whole episode). Segments never cross an episode boundary.
        """
        order = self.chronological()
        episode = self.episode_id[order]
        if self.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        run_starts = np.flatnonzero(np.r_[True, episode[1:] != episode[:-1]])
        run_ends = np.r_[run_starts[1:], self.size]  # exclusive
        run_last = np.repeat(run_ends - 1, run_ends - run_starts)  # (size,) last stored step of each one's episode
        k = np.arange(self.size)
        full = k + length - 1 <= run_last
        first_step = self.episode_step[order] == 0
        ended = (self.terminated | self.truncated)[order][run_last]  # an episode still running may grow to H
        padded = first_step & ended & (run_last - k + 1 < length)
        starts = np.flatnonzero(full | padded)
        last = np.minimum(starts + length - 1, run_last[starts])
        return starts, last

    def segments(self, starts: np.ndarray, last: np.ndarray, length: int) -> Segments:
        """Gather segments from chronological starts (see :meth:`segment_starts`)."""
        order = self.chronological()
        steps = starts[:, None] + np.arange(length)[None, :]  # (n, H)
        mask = steps <= last[:, None]
        phys = order[np.minimum(steps, last[:, None])]  # padding repeats the last valid step
        return Segments(
            obs=self.obs[phys],
            actions=self.actions[phys],
            true_rewards=np.where(mask, self.true_rewards[phys], 0.0).astype(np.float32),
            mask=mask,
            physics_states=self.physics_states[phys],
            next_obs=self.next_obs[phys],
        )

    def segment_member_returns(self, starts: np.ndarray, last: np.ndarray, length: int) -> np.ndarray:
        """(M, n) per-member learned returns of segments, from the cached member rewards (padding counts 0)."""
        order = self.chronological()
        steps = starts[:, None] + np.arange(length)[None, :]  # (n, H)
        mask = steps <= last[:, None]
        rewards = self.member_rewards[order[np.minimum(steps, last[:, None])]]  # (n, H, M)
        return np.einsum("nhm,nh->mn", rewards, mask.astype(np.float32))

    def newest_segment(self, n: int) -> Segments:
        """The newest k = min(n, size) transitions as one segment (1, k), oldest first, crossing episode boundaries
        (a view for metrics over recent data, not a query)."""
        order = self.chronological()[-n:]
        return Segments(
            obs=self.obs[order][None],
            actions=self.actions[order][None],
            true_rewards=self.true_rewards[order][None],
            mask=np.ones((1, len(order)), bool),
            physics_states=self.physics_states[order][None],
            next_obs=self.next_obs[order][None],
        )

    def recent(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """True rewards (k,) and member rewards (k, M) of the newest k = min(n, size) relabelled transitions."""
        order = self.chronological()[: self.size - self.pending][-n:]
        return self.true_rewards[order], self.member_rewards[order]

    def sample_segments(self, n: int, length: int, rng: np.random.Generator) -> Segments:
        starts, last = self.segment_starts(length)
        if len(starts) == 0:
            raise RuntimeError(f"the replay buffer holds no segment of length {length} yet")
        pick = rng.integers(0, len(starts), size=n)
        return self.segments(starts[pick], last[pick], length)

    # -- persistence ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The filled part in chronological order, plus counters (arrays only: safe to store without pickle)."""
        order = self.chronological()
        state = {name: getattr(self, name)[order] for name in _ARRAYS}
        state["counters"] = np.array([self.size, self.pending], np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        size, pending = (int(x) for x in state["counters"])
        if size > self.capacity:
            raise ValueError(f"the saved buffer holds {size} transitions, more than --buffer-size {self.capacity}")
        for name in _ARRAYS:
            target = getattr(self, name)
            source = np.asarray(state[name])
            if source.shape[1:] != target.shape[1:] or source.shape[0] != size:
                raise ValueError(
                    f"saved replay buffer field {name!r} has shape {source.shape}, expected "
                    f"({size}, *{target.shape[1:]}); was it saved for another environment?"
                )
            target[:size] = source
        self.size, self.pending = size, pending
        self.pos = size % self.capacity
