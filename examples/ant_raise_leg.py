"""A behaviour no reward describes, for the simulated teacher: the ant raises one leg (its front-left foot) and
holds it up while the other three stay down.

    python framework/sac_rlhf.py --env-id Ant-v5 --teacher-sim-reward examples/ant_raise_leg.py:raised_leg

The teacher prefers the segment whose front-left foot is higher above the highest of the other three feet, summed
over the segment's steps (rlhf.custom_reward: the function sees the segments' transitions and, through their
stored physics states, the feet's positions). Each "foot" is the centre of a leg's lower capsule (the
``*_ankle_geom`` geoms of Gymnasium's ant.xml); the front-left one is ``left_ankle_geom``.
"""

from __future__ import annotations

import numpy as np

FEET = ("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom")  # front-left first


def raised_leg(t) -> np.ndarray:
    """(N, H) per-step reward: height of the front-left foot above the highest other foot, in metres."""
    z = t.geom_positions(FEET)[..., 2]  # (N, H, 4) heights
    return z[..., 0] - z[..., 1:].max(axis=-1)
