"""PPO rollouts: vectorised environments, rollout storage, GAE, and the window of recent rollouts that PrefPPO's
queries are drawn from.

Autoreset: gymnasium 1.x vector environments reset a finished sub-environment on the NEXT ``step`` by default, which
would put a pseudo-transition (the reset, with the ignored action) into every rollout. :func:`make_vector_env` uses
``AutoresetMode.SAME_STEP`` instead: a step that ends an episode returns the first observation of the next episode
and puts the true last observation in ``info["final_obs"]``, so every stored step is a real transition and a
truncated episode can be bootstrapped from V(its true final observation).
"""

from __future__ import annotations

import numpy as np

from rlhf.envs import make_env
from rlhf.replay import ReplayBuffer
from rlhf.segments import Segments


def make_vector_env(env_id: str, num_envs: int, seed: int, render_mode: str | None = None):
    """``num_envs`` copies of ``env_id`` (sub-env i seeded ``seed + i``) in a SyncVectorEnv with same-step autoreset.

    Sync (not async) so that each sub-env's MuJoCo state can be read for clip rendering (``envs.envs[i]``).
    ``render_mode`` applies to sub-env 0 only (the live viewer shows one environment).
    """
    import gymnasium as gym

    def thunk(i: int):
        return lambda: make_env(env_id, seed=seed + i, render_mode=render_mode if i == 0 else None)

    return gym.vector.SyncVectorEnv(
        [thunk(i) for i in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def final_observations(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """(N, o) true next observations: ``info["final_obs"]`` where an episode just ended, else ``next_obs``."""
    real = np.array(next_obs, copy=True)
    if "_final_obs" in infos:
        for i in np.flatnonzero(infos["_final_obs"]):
            real[i] = infos["final_obs"][i]
    return real


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over a rollout; all arrays (T, N), returns (advantages, returns) (T, N).

    ``next_values[t]`` = V(s_{t+1}) of the TRUE next state (the final observation when an episode ended at t).
    δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t): a termination does not bootstrap, a truncation (time
    limit) does. The recursion A_t = δ_t + γλ (1 − done_t) A_{t+1} stops at every episode end (done = terminated or
    truncated), so no advantage leaks from one episode into the next.
    """
    term = terminated.astype(np.float64)
    not_done = 1.0 - np.maximum(term, truncated.astype(np.float64))
    deltas = rewards + gamma * (1.0 - term) * next_values - values
    advantages = np.zeros_like(deltas, dtype=np.float64)
    last = np.zeros(deltas.shape[1:], np.float64)
    for t in reversed(range(len(deltas))):  # sequential by nature; vectorised over environments
        last = deltas[t] + gamma * lam * not_done[t] * last
        advantages[t] = last
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


class RolloutBuffer:
    """One rollout of T steps of N environments, as PPO trains on it (observations already normalised)."""

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, act_dim: int):
        T, N = num_steps, num_envs
        self.obs = np.zeros((T, N, obs_dim), np.float32)  # normalised, what the policy saw
        self.raw_obs = np.zeros((T, N, obs_dim), np.float32)  # as the environment returned it (reward model input)
        self.next_obs = np.zeros((T, N, obs_dim), np.float32)  # raw true next observations
        self.actions = np.zeros((T, N, act_dim), np.float32)  # sampled (unclipped), for the log-probabilities
        self.env_actions = np.zeros((T, N, act_dim), np.float32)  # clipped to the bounds, what the env executed
        self.logprobs = np.zeros((T, N), np.float32)
        self.values = np.zeros((T, N), np.float32)
        self.next_values = np.zeros((T, N), np.float32)  # V(true s_{t+1}), filled by :meth:`set_next_values`
        self.final_values = np.zeros((T, N), np.float32)  # V(final observation) where an episode was truncated
        self.true_rewards = np.zeros((T, N), np.float32)
        self.terminated = np.zeros((T, N), bool)
        self.truncated = np.zeros((T, N), bool)
        self.steps = np.zeros((T, N), np.int64)  # global environment step of each transition (RUNE's t)

    def set_next_values(self, last_values: np.ndarray) -> None:
        """V(s_{t+1}) for every step from the stored values, ``last_values`` (N,) = V(obs after the rollout), and
        the final-observation values of truncated episodes (terminated steps are not bootstrapped at all)."""
        self.next_values[:-1] = self.values[1:]
        self.next_values[-1] = last_values
        truncated_only = self.truncated & ~self.terminated
        self.next_values[truncated_only] = self.final_values[truncated_only]

    def advantages(self, rewards: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """GAE of this rollout for the given (T, N) rewards (true or learned)."""
        return compute_gae(rewards, self.values, self.next_values, self.terminated, self.truncated, gamma, lam)


class RolloutWindow:
    """The transitions of the last few rollouts, per environment, for query selection and the exploration reward.

    One :class:`rlhf.replay.ReplayBuffer` per sub-environment (a ring over ``capacity`` steps) keeps each env's
    episodes contiguous, so segments never cross an episode boundary and early-terminated episodes are padded
    exactly as in the replay buffer. Segments are copied out, so a label keeps its data after the window wraps.
    """

    def __init__(self, num_envs: int, capacity: int, obs_dim: int, act_dim: int, state_dim: int):
        self.buffers = [ReplayBuffer(capacity, obs_dim, act_dim, state_dim) for _ in range(num_envs)]
        self.episode_id: np.ndarray = np.zeros(num_envs, np.int64)
        self.episode_step: np.ndarray = np.zeros(num_envs, np.int64)

    def add(self, obs, actions, next_obs, rewards, terminated, truncated, physics_states) -> None:
        """One vector step: arrays (N, ·) for every sub-environment; ``next_obs`` is the true next observation."""
        for i, rb in enumerate(self.buffers):
            rb.add(
                obs[i],
                actions[i],
                next_obs[i],
                rewards[i],
                terminated[i],
                truncated[i],
                self.episode_id[i],
                self.episode_step[i],
                physics_states[i],
            )
        done = np.asarray(terminated) | np.asarray(truncated)
        self.episode_step = np.where(done, 0, self.episode_step + 1)
        self.episode_id = self.episode_id + done

    @property
    def size(self) -> int:
        return sum(rb.size for rb in self.buffers)

    def visited_states(self) -> np.ndarray:
        """(size, o) next observations of every stored transition (the k-NN entropy's particles)."""
        return np.concatenate([rb.next_obs[: rb.size] for rb in self.buffers])

    def sample_segments(self, n: int, length: int, rng: np.random.Generator) -> Segments:
        """n segments drawn uniformly over the valid segment starts of all sub-environments."""
        starts = [rb.segment_starts(length) for rb in self.buffers]
        counts = np.array([len(s) for s, _ in starts])
        if counts.sum() == 0:
            raise RuntimeError(f"the rollout window holds no segment of length {length} yet")
        pick = rng.integers(0, counts.sum(), size=n)
        env = np.searchsorted(np.cumsum(counts), pick, side="right")  # (n,) sub-environment of each pick
        local = pick - np.r_[0, np.cumsum(counts)[:-1]][env]
        parts, order = [], []
        for i in np.unique(env):
            sel = np.flatnonzero(env == i)
            s, last = starts[i]
            parts.append(self.buffers[i].segments(s[local[sel]], last[local[sel]], length))
            order.append(sel)
        segments = Segments.concatenate(parts)
        return segments[np.argsort(np.concatenate(order))]  # back into the order of the draws

    def state_dict(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            **{f"env{i}": rb.state_dict() for i, rb in enumerate(self.buffers)},
            "episodes": {"episode_id": self.episode_id, "episode_step": self.episode_step},
        }

    def load_state_dict(self, state: dict, continue_episodes: bool = False) -> None:
        """``continue_episodes``: the environments continue the saved episodes (exact resume); otherwise (a loaded
        exploration) the next step starts a fresh episode id in every environment, so none is continued."""
        if len(state) - 1 != len(self.buffers):
            raise ValueError(f"the saved window has {len(state) - 1} environments, --num-envs is {len(self.buffers)}")
        for i, rb in enumerate(self.buffers):
            rb.load_state_dict(state[f"env{i}"])
        episodes = state["episodes"]
        if continue_episodes:
            self.episode_id = np.asarray(episodes["episode_id"], np.int64).reshape(self.episode_id.shape)
            self.episode_step = np.asarray(episodes["episode_step"], np.int64).reshape(self.episode_step.shape)
        else:
            self.episode_id = np.asarray(episodes["episode_id"]) + 1
            self.episode_step = np.zeros_like(self.episode_step)
