"""Environment factory: Gymnasium MuJoCo v5 tasks and DM Control tasks (through shimmy) behind one interface.

Every environment returned here has a flat float32 observation vector and a finite Box action space, and exposes
its MuJoCo physics so that a stored state can be re-rendered later (queried segments become clips long after they
were collected, in another process or on another thread).

``uv run python framework/list_envs.py`` lists the ids; docs/environments.md has each id's tested status.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from rlhf.config import ConfigError
from rlhf.rendering import check_offscreen_backend, configure_headless_rendering

# An actuator without a control range is reported by dm_control (and shimmy) with bounds of ±1e10 (the lqr
# domain's motors); a tanh policy scaled to them, or uniform random exploration in them, blows the simulation up
# (PhysicsError mjWARN_BADQACC, issue 13). Bounds beyond UNLIMITED_ACTION are treated as "no limit" and replaced
# by UNLIMITED_ACTION_RANGE, the [-1, 1] of every other DM Control suite actuator. Measured on lqr_2_1 / lqr_6_2
# (1000 steps, states of norm ~1): zero actions return 504 / 486, uniform random actions in ±1 return 478 / 452,
# in ±3 326 / 163, in ±10 -1253 / -3163, so [-1, 1] holds the controls that do well and keeps exploration sane.
UNLIMITED_ACTION = 1e3
UNLIMITED_ACTION_RANGE = (-1.0, 1.0)
# dm_control's lqr tasks have an infinite time limit (dm_control/suite/lqr.py, _DEFAULT_TIME_LIMIT = inf): an
# episode, and so an evaluation, would never end. They get the 1000 steps of the other suite tasks.
DEFAULT_EPISODE_STEPS = 1000
# Episode seeds are stored in the float32 physics-state arrays of the buffers, so they must be exact in float32.
_SEED_RANGE = 2**24
_HEADER = 2  # render state = [episode seed, true state length, mjSTATE_PHYSICS (padded with zeros)]


def _import_gym():
    # torch imports triton lazily (e.g. at the first optimizer step); importing it after dm_control's native
    # libraries are loaded segfaults (seen with torch 2.15 + dm_control 1.0.50), so load it first (0.1 s).
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    import gymnasium as gym

    return gym


def _is_task(env_id: str, spec) -> bool:
    """A Gymnasium MuJoCo v5 task, a DM Control suite task or a state-based manipulation task.

    shimmy registers its tasks as partials of its suite / manipulation constructors that name the task; its
    ``dm_control/compatibility-env-v0`` is the bare wrapper (it needs an ``env`` argument), not a task. The
    ``*_vision`` manipulation variants observe pixels, which this state-based framework does not learn from."""
    if env_id.endswith("-v5") and "gymnasium.envs.mujoco" in str(spec.entry_point):
        return True
    entry = spec.entry_point
    if not (env_id.startswith("dm_control/") and isinstance(entry, functools.partial)):
        return False
    if {"domain_name", "task_name"} <= entry.keywords.keys():
        return True
    return "env_name" in entry.keywords and not entry.keywords["env_name"].endswith("_vision")


@functools.lru_cache(maxsize=1)
def _known_env_ids() -> tuple[str, ...]:
    configure_headless_rendering()
    gym = _import_gym()
    import shimmy

    gym.register_envs(shimmy)
    return tuple(sorted(env_id for env_id, spec in gym.registry.items() if _is_task(env_id, spec)))


def known_env_ids() -> list[str]:
    """All environment ids this factory accepts: Gymnasium MuJoCo v5 ids and shimmy's dm_control task ids."""
    return list(_known_env_ids())


def validate_env_id(env_id: str) -> None:
    """Raise a ConfigError naming close matches when ``env_id`` is not a supported id."""
    ids = known_env_ids()
    if env_id in ids:
        return
    import difflib

    close = difflib.get_close_matches(env_id, ids, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"--env-id {env_id!r} is not a Gymnasium MuJoCo v5 id or a dm_control/<domain>-<task>-v0 id "
        f"(`python framework/list_envs.py` lists them).{hint}"
    )


@dataclass(frozen=True)
class EnvInfo:
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    max_episode_steps: int
    physics_state_dim: int


# What re-rendering a stored step needs, in one fixed-size vector per step (the buffers hold (n, dim) arrays):
# mjSTATE_PHYSICS (qpos, qvel, actuator activations) is not enough for DM Control, whose tasks redraw part of the
# *model* at every reset: the target of reacher, fish, swimmer and finger (model.geom_pos / site_pos), the goal
# poses of manipulator, stacker and the manipulation tasks (model.body_pos / body_quat); and the manipulation
# stack / reassemble tasks recompile the model at every reset with the base brick's free joint removed
# (dm_control/manipulation/bricks.py, _add_or_remove_freejoints), so the state shrinks from 44 to 31 numbers
# (stack_2_bricks) after the first reset, and in the random-order tasks which brick lost its joint changes from
# episode to episode (issue 13: "could not broadcast (31,) into (44,)"). Storing those model fields with every
# step would cost hundreds of numbers per transition (stack_3_bricks has 267 geoms), and a qpos of one fixed
# model cannot express a brick that is welded to the table in one episode and free in the next. So every DM
# Control reset is seeded with an episode seed drawn from the wrapper's own generator; the seed is stored with
# each state, and a renderer resets its own copy of the task with that seed to rebuild the episode's model (0.1-
# 0.5 s for a manipulation task, once per clip) before setting the state. The state is padded with zeros to the
# size of the model before the first reset (every prop free: the largest) and its true length is stored, so
# every step of every episode fits the array that env_info() sizes. Gymnasium MuJoCo never changes its model
# (its reset noise is in qpos / qvel), so its episode seed is -1 and its resets stay as Gymnasium does them.
@functools.lru_cache(maxsize=1)
def _wrappers():
    gym = _import_gym()

    class EpisodeModel(gym.Wrapper):
        """Seeds each DM Control reset from its own generator and keeps the episode's seed (see above)."""

        def __init__(self, env, reseed: bool):
            super().__init__(env)
            self.reseed = reseed
            self.rng = np.random.default_rng()
            self.episode_seed = -1
            self.state_size = _raw_state_size(env)
            # A reset must depend on its seed only, but some tasks carry state from one reset to the next:
            # dm_control's Reassemble shuffles its ``_initial_order`` array in place at every reset
            # (manipulation/bricks.py, initialize_episode_mjcf), so the same seed gave another brick order in a
            # renderer than in training (re-rendered frames off by 1 intensity level on average, measured). Every
            # reset starts from the task's arrays as built; a shuffle of the built order is as random as one of
            # the previous order.
            self.task = getattr(getattr(env.unwrapped, "_env", None), "task", None) if reseed else None
            task_attrs = vars(self.task).items() if self.task is not None else ()
            self.task_arrays = {k: v.copy() for k, v in task_attrs if isinstance(v, np.ndarray)}

        def reset(self, *, seed=None, options=None):
            if not self.reseed:
                return self.env.reset(seed=seed, options=options)
            if seed is not None:
                self.rng = np.random.default_rng(seed)
            return self.reset_to_episode(int(self.rng.integers(_SEED_RANGE)), options)

        def reset_to_episode(self, episode_seed: int, options=None):
            """Rebuild the model (and initial state) of the episode that was reset with ``episode_seed``."""
            self.episode_seed = int(episode_seed)
            for name, built in self.task_arrays.items():
                setattr(self.task, name, built.copy())
            return self.env.reset(seed=self.episode_seed, options=options)

    class FiniteActions(gym.ActionWrapper):
        """Replaces unlimited action bounds by UNLIMITED_ACTION_RANGE and clips actions to it (see above)."""

        def __init__(self, env):
            super().__init__(env)
            space = env.action_space
            unlimited = ~np.isfinite(space.low) | ~np.isfinite(space.high)
            unlimited |= (np.abs(space.low) > UNLIMITED_ACTION) | (np.abs(space.high) > UNLIMITED_ACTION)
            low = np.where(unlimited, UNLIMITED_ACTION_RANGE[0], space.low).astype(space.dtype)
            high = np.where(unlimited, UNLIMITED_ACTION_RANGE[1], space.high).astype(space.dtype)
            self.action_space = gym.spaces.Box(low, high, dtype=space.dtype)

        def action(self, action):
            return np.clip(action, self.action_space.low, self.action_space.high)

    return EpisodeModel, FiniteActions


def _has_unlimited_actions(space) -> bool:
    bounds = np.concatenate([np.ravel(space.low), np.ravel(space.high)])
    return bool((~np.isfinite(bounds) | (np.abs(bounds) > UNLIMITED_ACTION)).any())


def make_env(env_id: str, seed: int | None = None, render_mode: str | None = None, width: int = 480, height: int = 480):
    """Make one environment with flat float32 observations and finite action bounds.

    ``render_mode`` is None, "rgb_array" or "human". Observations of DM Control tasks (dicts) are flattened in a
    fixed key order. The time limit is the task's own (1000 steps for both suites' locomotion tasks, 250 for the
    manipulation tasks), DEFAULT_EPISODE_STEPS where the task has none. Raises ConfigError (exit status 2) for an
    unknown id or one that cannot be built here.
    """
    configure_headless_rendering(render_mode or "")
    gym = _import_gym()
    validate_env_id(env_id)
    if render_mode is not None:
        check_offscreen_backend()
    dm_control = env_id.startswith("dm_control/")
    kwargs: dict = {}
    if dm_control:
        if render_mode is not None:
            kwargs = {"render_mode": render_mode, "render_kwargs": {"width": width, "height": height}}
    elif render_mode == "human":
        kwargs = {"render_mode": "human"}
    elif render_mode is not None:
        kwargs = {"render_mode": render_mode, "width": width, "height": height}
    try:
        env = gym.make(env_id, **kwargs)
    except Exception as e:  # a listed id that does not build on this machine: one line, not a traceback
        raise ConfigError(f"--env-id {env_id!r} cannot be built: {type(e).__name__}: {e}") from e
    if dm_control and render_mode is not None and env.unwrapped.physics.model.ncam > 0:
        # DM Control renders its free camera (-1) unless told otherwise, which stays where the walker started;
        # camera 0 is each suite task's own view, and follows the locomotion tasks' bodies (e.g. walker.xml's
        # "side" camera, mode="trackcom"), as in the suite's own videos
        env.unwrapped.render_kwargs["camera_id"] = 0
    episode_model, finite_actions = _wrappers()
    env = episode_model(env, reseed=dm_control)
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = gym.wrappers.FlattenObservation(env)
    env = gym.wrappers.TransformObservation(
        env, lambda o: np.asarray(o, dtype=np.float32), _float32_box(env.observation_space)
    )
    if _has_unlimited_actions(env.action_space):
        env = finite_actions(env)
    if _task_step_limit(env) is None:
        env = gym.wrappers.TimeLimit(env, DEFAULT_EPISODE_STEPS)
    if seed is not None:
        env.action_space.seed(seed)
    return env


def _float32_box(space):
    from gymnasium.spaces import Box

    return Box(low=-np.inf, high=np.inf, shape=(int(np.prod(space.shape)),), dtype=np.float32)


def _task_step_limit(env) -> int | None:
    """The task's own episode length in steps, None when it has none (a finite limit ends episodes itself)."""
    if env.spec is not None and env.spec.max_episode_steps:
        return int(env.spec.max_episode_steps)
    dm_env = getattr(env.unwrapped, "_env", None)
    step_limit = getattr(dm_env, "_step_limit", None)  # dm_control.rl.control.Environment (the suite)
    if step_limit is not None:
        return int(step_limit) if np.isfinite(step_limit) else None
    time_limit = getattr(dm_env, "_time_limit", None)  # dm_control.composer.Environment (manipulation)
    if dm_env is not None and time_limit is not None and np.isfinite(time_limit):
        return int(round(time_limit / dm_env.task.control_timestep))
    return None


def max_episode_steps(env) -> int:
    """The episode length of ``env``: its time limit (the task's own or DEFAULT_EPISODE_STEPS)."""
    return _task_step_limit(env) or DEFAULT_EPISODE_STEPS


def mujoco_handles(env):
    """(MjModel, MjData) of the environment, whichever suite it comes from (a composer reset makes new ones)."""
    raw = env.unwrapped
    if hasattr(raw, "physics"):  # shimmy's DmControlCompatibilityV0
        return raw.physics.model.ptr, raw.physics.data.ptr
    return raw.model, raw.data


def _raw_state_size(env) -> int:
    import mujoco

    model, _ = mujoco_handles(env)
    return int(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_PHYSICS))


def episode_model(env):
    """The EpisodeModel wrapper of an env made by make_env (None for any other env)."""
    cls = _wrappers()[0]
    while env is not None:
        if isinstance(env, cls):
            return env
        env = getattr(env, "env", None)
    return None


def get_physics_state(env) -> np.ndarray:
    """What re-rendering the current frame needs (see above): [episode seed, n, mjSTATE_PHYSICS (n), zero padding].

    mjSTATE_PHYSICS is qpos, qvel, actuator activations and, where the model has them, history buffers."""
    import mujoco

    model, data = mujoco_handles(env)
    wrapper = episode_model(env)
    n = _raw_state_size(env)
    size = wrapper.state_size if wrapper is not None else n
    if n > size:
        raise ValueError(
            f"{env.spec.id if env.spec else env}: physics state of {n} numbers, more than the {size} sized"
        )
    state = np.zeros(_HEADER + size, dtype=np.float64)
    state[0] = wrapper.episode_seed if wrapper is not None else -1
    state[1] = n
    mujoco.mj_getState(model, data, state[_HEADER : _HEADER + n], mujoco.mjtState.mjSTATE_PHYSICS)
    return state


def set_physics_state(env, state: np.ndarray) -> None:
    """Restore a state captured by :func:`get_physics_state` (rebuilding its episode's model first where the task
    changes the model at reset) and recompute derived quantities for rendering."""
    import mujoco

    state = np.asarray(state, dtype=np.float64)
    episode_seed, n = int(state[0]), int(state[1])
    wrapper = episode_model(env)
    if episode_seed >= 0 and wrapper is not None and wrapper.episode_seed != episode_seed:
        wrapper.reset_to_episode(episode_seed)
    model, data = mujoco_handles(env)
    if n != _raw_state_size(env) or len(state) < _HEADER + n:
        raise ValueError(
            f"a stored physics state of {n} numbers does not fit this environment's model "
            f"({_raw_state_size(env)}); was it stored for another environment?"
        )
    mujoco.mj_setState(model, data, state[_HEADER : _HEADER + n], mujoco.mjtState.mjSTATE_PHYSICS)
    mujoco.mj_forward(model, data)


def env_info(env) -> EnvInfo:
    return EnvInfo(
        obs_dim=int(np.prod(env.observation_space.shape)),
        act_dim=int(np.prod(env.action_space.shape)),
        action_low=np.asarray(env.action_space.low, dtype=np.float32),
        action_high=np.asarray(env.action_space.high, dtype=np.float32),
        max_episode_steps=max_episode_steps(env),
        physics_state_dim=int(get_physics_state(env).shape[0]),
    )
