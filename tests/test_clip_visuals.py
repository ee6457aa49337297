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
