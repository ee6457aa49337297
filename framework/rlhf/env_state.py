"""Environment state for exact resume, as checkpoint components (``state_dict`` / ``load_state_dict``).

- :class:`EpisodeBoundaryState` (SAC scripts, one environment): checkpoints are taken between episodes, so the
  environment's random generators are all there is; the next ``reset`` draws the same initial state as the
  uninterrupted run would.
- :class:`VectorEnvState` (PPO scripts): a rollout ends mid-episode, so each sub-environment's whole MuJoCo
  integration state (``mjSTATE_INTEGRATION``: qpos, qvel, activations, warm-start accelerations, time, ...), its
  time-limit counter and its random generators are saved, with the last observations the policy acts on. The
  vector environment resets finished sub-environments in the same step (``rlhf.rollout``), so it holds nothing
  pending between rollouts. Exact for Gymnasium MuJoCo tasks; dm_control tasks keep internal task state that
  this does not capture, so their resume continues the episodes approximately.
"""

from __future__ import annotations

import numpy as np

from rlhf.envs import episode_model, mujoco_handles


def _generator_state(gen):
    # Gymnasium uses numpy Generators; shimmy's DM Control wrapper hands out a legacy RandomState.
    return gen.bit_generator.state if hasattr(gen, "bit_generator") else gen.get_state()


def _set_generator_state(gen, state) -> None:
    if hasattr(gen, "bit_generator"):
        gen.bit_generator.state = state
    else:
        gen.set_state(tuple(state))


def env_rng_state(env) -> dict:
    """The environment's random state (reset noise, random actions), for exact resume between episodes."""
    state = {
        "env": _generator_state(env.unwrapped.np_random),
        "action_space": _generator_state(env.action_space.np_random),
    }
    task = getattr(getattr(env.unwrapped, "_env", None), "task", None)
    if task is not None and hasattr(task, "random"):  # dm_control draws its initial states from the task's RNG
        state["dm_control_task"] = task.random.get_state()
    wrapper = episode_model(env)
    if wrapper is not None and wrapper.reseed:  # the episode seeds of the next resets
        state["episode_seeds"] = _generator_state(wrapper.rng)
    return state


def restore_env_rng_state(env, state: dict) -> None:
    _set_generator_state(env.unwrapped.np_random, state["env"])
    _set_generator_state(env.action_space.np_random, state["action_space"])
    if "dm_control_task" in state:
        env.unwrapped._env.task.random.set_state(tuple(state["dm_control_task"]))
    wrapper = episode_model(env)
    if "episode_seeds" in state and wrapper is not None:
        _set_generator_state(wrapper.rng, state["episode_seeds"])


class EpisodeBoundaryState:
    def __init__(self, env):
        self.env = env

    def state_dict(self) -> dict:
        return env_rng_state(self.env)

    def load_state_dict(self, state: dict) -> None:
        restore_env_rng_state(self.env, state)


def _time_limit(env):
    from gymnasium.wrappers import TimeLimit

    while env is not None and not isinstance(env, TimeLimit):
        env = getattr(env, "env", None)
    return env


def _integration_state(env) -> np.ndarray:
    import mujoco

    model, data = mujoco_handles(env)
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec), np.float64)
    mujoco.mj_getState(model, data, state, spec)
    return state


def _set_integration_state(env, state: np.ndarray) -> None:
    import mujoco

    model, data = mujoco_handles(env)
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    if state.shape != (mujoco.mj_stateSize(model, spec),):
        raise ValueError(f"saved MuJoCo state has shape {state.shape}; was it saved for another environment?")
    mujoco.mj_setState(model, data, np.asarray(state, np.float64), spec)
    mujoco.mj_forward(model, data)


class VectorEnvState:
    """A SyncVectorEnv's sub-environments plus the arrays the rollout loop carries between rollouts.

    ``next_obs`` (N, o), ``episode_return`` (N,) and ``episode_length`` (N,) are read and written by the script.
    """

    def __init__(self, envs, next_obs: np.ndarray):
        self.envs = envs
        self.next_obs = next_obs
        self.episode_return = np.zeros(envs.num_envs)
        self.episode_length = np.zeros(envs.num_envs, np.int64)

    def state_dict(self) -> dict:
        subs = []
        for env in self.envs.envs:
            limit = _time_limit(env)
            subs.append({"mujoco": _integration_state(env), "rng": env_rng_state(env),
                         "elapsed_steps": int(limit._elapsed_steps) if limit is not None else 0})  # fmt: skip
        return {"envs": subs, "next_obs": self.next_obs, "episode_return": self.episode_return,
                "episode_length": self.episode_length}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        if len(state["envs"]) != self.envs.num_envs:
            raise ValueError(f"saved {len(state['envs'])} environments, --num-envs is {self.envs.num_envs}")
        for env, sub in zip(self.envs.envs, state["envs"], strict=True):
            _set_integration_state(env, np.asarray(sub["mujoco"]))
            restore_env_rng_state(env, sub["rng"])
            limit = _time_limit(env)
            if limit is not None:
                limit._elapsed_steps = int(sub["elapsed_steps"])
        self.next_obs = np.asarray(state["next_obs"], np.float32).reshape(self.next_obs.shape)
        self.episode_return = np.asarray(state["episode_return"], np.float64).reshape(self.episode_return.shape)
        self.episode_length = np.asarray(state["episode_length"], np.int64).reshape(self.episode_length.shape)
