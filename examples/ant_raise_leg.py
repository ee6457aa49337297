"""A behaviour no reward describes, for the simulated teacher: the ant raises one leg (its front-left foot) and
holds it up while the other three stay down.

    python framework/sac_rlhf.py --env-id Ant-v5 --teacher-sim-reward examples/ant_raise_leg.py:raised_leg

The teacher prefers the segment whose front-left foot is higher above the highest of the other three feet, summed
over the segment's steps (rlhf.custom_reward: the function sees the segments' transitions and, through their
stored physics states, the feet's positions). Each "foot" is the centre of a leg's lower capsule (the
``*_ankle_geom`` geoms of Gymnasium's ant.xml); the front-left one is ``left_ankle_geom``.

Why the constant ``ALIVE``: the teacher counts 0 for the steps after an episode ends inside a segment, and a
standing ant's height difference is at or below 0 (the front-left foot is rarely above all three others by
chance). Without a positive per-step term, a segment that falls over early sums to more than one that stands, and
the policy learns to end its episodes (observed here: a first run's episodes shrank from 139 to 48 steps over
40 k steps). Gymnasium's own Ant reward pays a healthy reward of 1 per step for the same reason
(``healthy_reward=1.0`` in ``gymnasium/envs/mujoco/ant_v5.py``); between two segments that both stay up the
constant cancels and only the leg counts.
"""

from __future__ import annotations

import numpy as np

FEET = ("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom")  # front-left first
ALIVE = 1.0  # per step alive, in metres of leg height; see the module docstring


def raised_leg(t) -> np.ndarray:
    """(N, H) per-step reward: height of the front-left foot above the highest other foot, in metres, plus ALIVE."""
    z = t.geom_positions(FEET)[..., 2]  # (N, H, 4) heights
    return ALIVE + z[..., 0] - z[..., 1:].max(axis=-1)
