"""Environment factory: Gymnasium MuJoCo v5 tasks and DM Control tasks (through shimmy) behind one interface.

Every environment returned here has a flat float32 observation vector and a Box action space, and exposes its
MuJoCo physics so that a stored state can be re-rendered later (queried segments become clips long after they
were collected).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

# Suite tasks are dm_control/<domain>-<task>-v0; manipulation tasks dm_control/<task>_features-v0. The *_vision
# manipulation variants observe pixels, which this state-based framework does not learn from.
DM_CONTROL_ID = re.compile(r"^dm_control/(?!.*_vision-v0$)[a-z_0-9-]+-v0$")


def configure_headless_rendering(render_mode: str = "") -> None:
    """Choose an OpenGL backend before mujoco / dm_control are imported.

    With no ``MUJOCO_GL`` set and no display, MuJoCo cannot render at all; EGL renders offscreen on CPU-only
    machines through Mesa's llvmpipe. A user's own choice (osmesa, glfw under xvfb) is always honoured, and the
    live viewer (``render_mode == "human"``) needs glfw, so EGL is not forced then.
    """
    if "MUJOCO_GL" in os.environ:
        return
    if render_mode == "human":
        os.environ["MUJOCO_GL"] = "glfw"  # pinned so that later headless defaults cannot switch it to egl
        return
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def check_render_mode(render_mode: str) -> None:
    """The live viewer needs a display; fail before training rather than deep inside glfw."""
    import sys

    if render_mode == "human" and sys.platform.startswith("linux"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ValueError(
                "--render-mode human needs a display and none is set (DISPLAY); run under "
                "`xvfb-run -- ...` or leave the flag out"
            )


def _import_gym():
    # torch imports triton lazily (e.g. at the first optimizer step); importing it after dm_control's native
    # libraries are loaded segfaults (seen with torch 2.15 + dm_control 1.0.50), so load it first (0.1 s).
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    import gymnasium as gym

    return gym


def known_env_ids() -> list[str]:
    """All environment ids this factory accepts: Gymnasium MuJoCo v5 ids and shimmy's dm_control ids."""
    configure_headless_rendering()
    gym = _import_gym()
    import shimmy

    gym.register_envs(shimmy)
    ids = []
    for env_id, spec in gym.registry.items():
        entry = str(spec.entry_point)
        if env_id.endswith("-v5") and "gymnasium.envs.mujoco" in entry or DM_CONTROL_ID.match(env_id):
            ids.append(env_id)
    return sorted(ids)


def validate_env_id(env_id: str) -> None:
    """Raise a ValueError naming close matches when ``env_id`` is not a supported id."""
    ids = known_env_ids()
    if env_id in ids:
        return
    import difflib

    close = difflib.get_close_matches(env_id, ids, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"--env-id {env_id!r} is not a Gymnasium MuJoCo v5 id or a dm_control/<domain>-<task>-v0 id.{hint}"
    )


@dataclass(frozen=True)
class EnvInfo:
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    max_episode_steps: int
    physics_state_dim: int


def make_env(env_id: str, seed: int | None = None, render_mode: str | None = None, width: int = 480, height: int = 480):
    """Make one environment with flat float32 observations.

    ``render_mode`` is None, "rgb_array" or "human". Observations of DM Control tasks (dicts) are flattened in a
    fixed key order. The time limit is the task's own (1000 steps for both suites' locomotion tasks).
    """
    configure_headless_rendering(render_mode or "")
    gym = _import_gym()
    validate_env_id(env_id)
    kwargs: dict = {}
    if DM_CONTROL_ID.match(env_id):
        if render_mode is not None:
            kwargs = {"render_mode": render_mode, "render_kwargs": {"width": width, "height": height}}
    elif render_mode == "human":
        kwargs = {"render_mode": "human"}
    elif render_mode is not None:
        kwargs = {"render_mode": render_mode, "width": width, "height": height}
    env = gym.make(env_id, **kwargs)
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = gym.wrappers.FlattenObservation(env)
    env = gym.wrappers.TransformObservation(
        env, lambda o: np.asarray(o, dtype=np.float32), _float32_box(env.observation_space)
    )
    if seed is not None:
        env.action_space.seed(seed)
    return env


def _float32_box(space):
    from gymnasium.spaces import Box

    return Box(low=-np.inf, high=np.inf, shape=(int(np.prod(space.shape)),), dtype=np.float32)


def max_episode_steps(env) -> int:
    """The task's time limit; DM Control tasks report it through shimmy's wrapper (default 1000)."""
    if env.spec is not None and env.spec.max_episode_steps:
        return int(env.spec.max_episode_steps)
    limit = getattr(env.unwrapped, "_env", None)
    time_limit = getattr(limit, "_step_limit", None)
    return int(time_limit) if time_limit and np.isfinite(time_limit) else 1000


def mujoco_handles(env):
    """(MjModel, MjData) of the environment, whichever suite it comes from."""
    raw = env.unwrapped
    if hasattr(raw, "physics"):  # shimmy's DmControlCompatibilityV0
        return raw.physics.model.ptr, raw.physics.data.ptr
    return raw.model, raw.data


def get_physics_state(env) -> np.ndarray:
    """Everything MuJoCo needs to reproduce the current frame (qpos, qvel, actuator activations, ...)."""
    import mujoco

    model, data = mujoco_handles(env)
    state = np.empty(mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_PHYSICS), dtype=np.float64)
    mujoco.mj_getState(model, data, state, mujoco.mjtState.mjSTATE_PHYSICS)
    return state


def set_physics_state(env, state: np.ndarray) -> None:
    """Restore a state captured by :func:`get_physics_state` and recompute derived quantities for rendering."""
    import mujoco

    model, data = mujoco_handles(env)
    mujoco.mj_setState(model, data, np.asarray(state, dtype=np.float64), mujoco.mjtState.mjSTATE_PHYSICS)
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
    return state


def restore_env_rng_state(env, state: dict) -> None:
    _set_generator_state(env.unwrapped.np_random, state["env"])
    _set_generator_state(env.action_space.np_random, state["action_space"])
    if "dm_control_task" in state:
        env.unwrapped._env.task.random.set_state(tuple(state["dm_control_task"]))
