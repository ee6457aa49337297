import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import FRAMEWORK

from rlhf.envs import env_info, get_physics_state, known_env_ids, make_env, set_physics_state, validate_env_id


def test_every_gymnasium_mujoco_v5_task_and_dm_control_tasks_are_known():
    ids = known_env_ids()
    for env_id in (
        "Ant-v5",
        "HalfCheetah-v5",
        "Hopper-v5",
        "Humanoid-v5",
        "HumanoidStandup-v5",
        "InvertedDoublePendulum-v5",
        "InvertedPendulum-v5",
        "Pusher-v5",
        "Reacher-v5",
        "Swimmer-v5",
        "Walker2d-v5",
        "dm_control/walker-walk-v0",
        "dm_control/cheetah-run-v0",
    ):
        assert env_id in ids
    assert sum(i.startswith("dm_control/") for i in ids) >= 62
    assert "dm_control/lift_brick_features-v0" in ids and "dm_control/lift_brick_vision-v0" not in ids


def test_unknown_id_is_a_clear_error():
    with pytest.raises(ValueError, match="Did you mean Hopper-v5"):
        validate_env_id("Hoper-v5")


def test_dm_control_observations_are_flat_float32():
    env = make_env("dm_control/walker-walk-v0", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (24,) and env_info(env).obs_dim == 24
    env.close()


@pytest.mark.parametrize("env_id", ["Hopper-v5", "dm_control/cartpole-swingup-v0"])
def test_a_stored_physics_state_re_renders_the_same_frame(env_id):
    env = make_env(env_id, seed=0, render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    state, frame = get_physics_state(env), env.render().copy()
    for _ in range(10):
        env.step(env.action_space.sample())
    assert not np.array_equal(env.render(), frame)
    set_physics_state(env, state)
    np.testing.assert_array_equal(env.render(), frame)
    env.close()


def test_rendering_works_headless_without_user_setup():
    code = (
        f"import sys; sys.path.insert(0, {str(FRAMEWORK)!r})\n"
        "from rlhf.envs import make_env\n"
        "e = make_env('Hopper-v5', seed=0, render_mode='rgb_array', width=32, height=32); e.reset(seed=0)\n"
        "f = e.render(); print(f.shape, int(f.max() > 0)); e.close()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(32, 32, 3) 1" in out.stdout
