"""Checking that an environment id works end to end here: build, step, reset and re-render a stored state.

``python framework/list_envs.py --check`` prints the table of docs/environments.md from :func:`check_env`, and
tests/test_envs.py runs it over every listed id (slow tier) and over a fast subset in the default suite.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

# A stored state is float32 in the buffers; measured, its re-render is still pixel-identical to the live frame
# (mean absolute difference 0.000 for Hopper, reacher, stack_2_bricks), while a model rebuilt for the wrong episode
# differed by 0.6-1.1 (reassemble_5_bricks_random_order before the task arrays were reset) and a frame of another
# episode by 0.8-6. So a re-render must match to within rounding of a few edge pixels.
MAX_MEAN_ABS_DIFF = 0.05


@dataclass
class EnvStatus:
    env_id: str
    ok: bool
    detail: str = ""
    obs_dim: int = 0
    act_dim: int = 0
    bounds: str = ""
    episode_steps: int = 0
    state_dim: int = 0
    seconds: float = 0.0

    def row(self) -> str:
        status = "pass" if self.ok else f"FAIL: {self.detail}"
        return (
            f"| `{self.env_id}` | {self.obs_dim} | {self.act_dim} | {self.bounds} | {self.episode_steps} | "
            f"{self.state_dim} | {status} |"
        )


TABLE_HEADER = (
    "| id | obs dim | action dim | action bounds | episode steps | stored state size | status |\n"
    "|---|---|---|---|---|---|---|"
)


def _bounds(low: np.ndarray, high: np.ndarray, unlimited: bool) -> str:
    text = f"[{float(low.min()):g}, {float(high.max()):g}]"
    if not (np.all(low == low.flat[0]) and np.all(high == high.flat[0])):
        text += " (per dimension)"
    return text + (" (unlimited in the task)" if unlimited else "")


def _live_frame(env, camera) -> np.ndarray:
    """The frame of the current state. Gymnasium's MuJoCo envs end a step with mj_step, which computes the body
    poses before integrating, so their kinematics lag qpos by one substep (gymnasium/envs/mujoco/mujoco_env.py,
    do_simulation; HalfCheetah's frame differed from its re-render by 1.06 on average); dm_control recomputes
    them after stepping. mj_forward draws the state the observation reports, which is what a re-render shows."""
    import mujoco

    from rlhf.envs import mujoco_handles

    mujoco.mj_forward(*mujoco_handles(env))
    return camera.render().copy()  # rlhf.camera.AgentCamera, as the re-render's


def check_env(env_id: str, size: int = 48, steps: int = 20) -> EnvStatus:
    """Build ``env_id``, run its first episode to the end and a second one for ``steps`` steps with random
    actions, and re-render the state stored in each episode in a separate renderer (as query clips are made),
    comparing it with the frame rendered live. Never raises: a failure is reported in the status."""
    from rlhf.camera import AgentCamera
    from rlhf.envs import _has_unlimited_actions, env_info, get_physics_state, make_env
    from rlhf.video import SegmentRenderer

    t0 = time.perf_counter()
    status = EnvStatus(env_id, ok=False)
    try:
        env = make_env(env_id, seed=0, render_mode="rgb_array", width=size, height=size)
        info = env_info(env)
        raw_space = env.unwrapped.action_space
        status.obs_dim, status.act_dim, status.state_dim = info.obs_dim, info.act_dim, info.physics_state_dim
        status.episode_steps = info.max_episode_steps
        status.bounds = _bounds(info.action_low, info.action_high, _has_unlimited_actions(raw_space))
        stored, live = [], []
        env.reset(seed=0)
        camera = AgentCamera.of(env)
        camera.render()  # frames the camera at the reset state, as SegmentRenderer does
        for episode in range(2):
            if episode:
                env.reset()
            for t in range(info.max_episode_steps if episode == 0 else steps):
                obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                if not (np.all(np.isfinite(obs)) and np.isfinite(reward)):
                    raise ValueError(f"non-finite observation or reward at step {t} of episode {episode}")
                if t == steps - 1:  # a state in the middle of the episode
                    stored.append(get_physics_state(env).astype(np.float32))  # as the buffers keep it
                    live.append(_live_frame(env, camera))
                if terminated or truncated:
                    break
            if episode == 0 and not (terminated or truncated):
                raise ValueError(f"the first episode did not end within {info.max_episode_steps} steps")
            if len(stored) <= episode:  # an episode that ended before `steps`: its last state
                stored.append(get_physics_state(env).astype(np.float32))
                live.append(_live_frame(env, camera))
        env.close()
        renderer = SegmentRenderer(env_id, size, size, light=False)  # the suite's visuals, as live
        try:
            for episode in (1, 0):  # the newest first, then back to an older episode's model
                frame = renderer.frames(stored[episode][None], np.ones(1, bool))[0]
                diff = float(np.abs(frame.astype(np.int16) - live[episode].astype(np.int16)).mean())
                if diff > MAX_MEAN_ABS_DIFF:
                    raise ValueError(f"re-rendered frame of episode {episode} differs (mean abs diff {diff:.2f})")
        finally:
            renderer.close()
        status.ok = True
    except Exception as e:
        status.detail = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    status.seconds = time.perf_counter() - t0
    return status


def status_table(statuses: list[EnvStatus]) -> str:
    """docs/environments.md: the checked ids as a Markdown table, with the numbers that pass."""
    passed = sum(s.ok for s in statuses)
    lines = [
        "# Environments",
        "",
        f"{passed} of {len(statuses)} listed ids pass `rlhf.env_check.check_env`: build, run the first episode to "
        "its end and a second one for 20 steps with uniform random actions, then re-render a stored state of each "
        "episode in a separate renderer (as the queried clips are made) and compare it with the live frame.",
        "",
        "Generated by `CLEANRLHF_UPDATE_ENV_TABLE=1 uv run pytest tests/test_envs.py -m slow -n 0` (the same "
        "check as `uv run python framework/list_envs.py --check`); without the variable that slow test fails when "
        "this file is out of date.",
        'Action bounds marked "unlimited in the task" are clipped to [-1, 1] (see `rlhf/envs.py`, '
        "`UNLIMITED_ACTION_RANGE`).",
        "",
        TABLE_HEADER,
        *(s.row() for s in statuses),
        "",
    ]
    return "\n".join(lines)
