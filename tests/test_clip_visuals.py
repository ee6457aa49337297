"""Labelling clips render with lighter visual settings that still show the same picture."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from rlhf.envs import get_physics_state, make_env, mujoco_handles
from rlhf.video import CLIP_VISUALS, SegmentRenderer


def states(env_id: str, n: int) -> np.ndarray:
    env = make_env(env_id, seed=0)
    env.reset(seed=0)
    out = []
    for _ in range(n):
        out.append(get_physics_state(env))
        env.step(env.action_space.high)  # a constant push: the bodies move visibly
    env.close()
    return np.stack(out)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "dm_control/cartpole-swingup-v0"])
def test_light_clips_use_the_clip_settings_and_show_the_same_scene(env_id):
    segment = states(env_id, 30)[[0, 10, 29]]  # three moments far enough apart for the body to have moved
    mask = np.ones(len(segment), bool)
    light, suite = SegmentRenderer(env_id, 96, 96), SegmentRenderer(env_id, 96, 96, light=False)
    try:
        quality = mujoco_handles(light.env)[0].vis.quality
        assert (quality.shadowsize, quality.offsamples) == (CLIP_VISUALS["shadowsize"], CLIP_VISUALS["offsamples"])
        suite_quality = mujoco_handles(suite.env)[0].vis.quality
        assert (suite_quality.shadowsize, suite_quality.offsamples) != (quality.shadowsize, quality.offsamples)
        model, suite_model = mujoco_handles(light.env)[0], mujoco_handles(suite.env)[0]
        assert not model.light_castshadow.any() and not model.mat_reflectance.any()  # no shadow, no reflection pass
        assert suite_model.light_castshadow.any()  # the suite's own model is untouched
        a, b = light.frames(segment, mask).astype(float), suite.frames(segment, mask).astype(float)
    finally:
        light.close()
        suite.close()
    assert a.shape == b.shape == (3, 96, 96, 3)
    assert a.std() > 10  # a picture, not a blank frame
    # the same scene: without shadows and reflections the floor is lit a little differently, but every pixel
    # follows the suite's picture (correlation over the pixels), and the bodies are where they are there
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.85
    moved_a, moved_b = (np.abs(f[0] - f[-1]).max(-1) > 40 for f in (a, b))  # where the body moved between moments
    # (the suite's frames also move in the floor's reflection, so: what moves in the clip moves there too)
    overlap = (moved_a & moved_b).sum() / moved_a.sum()
    assert moved_a.sum() > 20 and overlap > 0.8
    # and they follow the stored states: consecutive frames of a moving body differ
    assert np.abs(a[0] - a[-1]).mean() > 0.3


def _moved(env_id: str, root_x: int, xs) -> np.ndarray:
    """The reset state with the root's x coordinate (qpos index ``root_x``) set to each of ``xs``."""
    import mujoco

    env = make_env(env_id, seed=0)
    env.reset(seed=0)
    model, data = mujoco_handles(env)
    out = []
    for x in xs:
        data.qpos[root_x] = x
        mujoco.mj_forward(model, data)
        out.append(get_physics_state(env))
    env.close()
    return np.stack(out).astype(np.float32)


def _agent_pixels(frame: np.ndarray) -> int:
    """Pixels of the bodies' warm colours (Hopper's brown, the walker's tan); floor, sky and grid are grey or blue."""
    rgb = frame.astype(np.int16)
    return int(((rgb[..., 0] - rgb[..., 2]) > 40).sum())


@pytest.mark.parametrize(
    ("env_id", "root_x"), [("Hopper-v5", 0), ("HalfCheetah-v5", 0), ("dm_control/walker-walk-v0", 1)]
)
def test_clips_keep_a_travelling_agent_in_the_picture(env_id, root_x):
    """A state 3 m and 8 m down the track shows the agent as the reset state does. Gymnasium 1.4's free camera and
    DM Control's default camera (-1) stay at the start: before rlhf.camera.AgentCamera and camera 0, these frames
    were an empty floor (checked: 0 agent pixels at 3 m for Hopper and walker-walk)."""
    renderer = SegmentRenderer(env_id, 96, 96)
    try:
        frames = renderer.frames(_moved(env_id, root_x, (0.0, 3.0, 8.0)), np.ones(3, bool))
    finally:
        renderer.close()
    at_start = _agent_pixels(frames[0])
    assert at_start > 50
    for frame in frames[1:]:
        assert _agent_pixels(frame) > 0.7 * at_start, [_agent_pixels(f) for f in frames]


def test_a_fixed_scene_keeps_its_camera():
    """The pendulum's camera does not move with the cart (nothing roams: tracked_body is None)."""
    from rlhf.camera import AgentCamera

    env = make_env("InvertedPendulum-v5", seed=0, render_mode="rgb_array", width=32, height=32)
    env.reset(seed=0)
    camera = AgentCamera.of(env)
    assert camera.body is None and AgentCamera.of(env) is camera
    camera.render()
    lookat = env.unwrapped.mujoco_renderer.viewer.cam.lookat.copy()
    env.step(env.action_space.high)
    camera.render()
    np.testing.assert_array_equal(env.unwrapped.mujoco_renderer.viewer.cam.lookat, lookat)
    env.close()
