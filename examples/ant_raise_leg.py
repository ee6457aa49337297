"""A behaviour no reward describes, for the simulated teacher: the ant raises one leg (its front-left foot) and
holds it up while the other three stay down.

    python framework/sac_rlhf.py --env-id Ant-v5 --teacher-sim-reward examples/ant_raise_leg.py:raised_leg

The teacher prefers the segment whose front-left foot is higher above the highest of the other three feet, summed
over the segment's steps (rlhf.custom_reward: the function sees the segments' transitions and, through their
stored physics states, the feet's positions). Each "foot" is the centre of a leg's lower capsule (the
``*_ankle_geom`` geoms of Gymnasium's ant.xml); the front-left one is ``left_ankle_geom``.

Why the constant ``ALIVE``: the teacher counts 0 for the steps after an episode ends inside a segment, and the
height difference is below 0 unless the agent does something special (on average 0.15 m below under random
actions; 0.09 m below while the ant settles under zero actions, 0.001 m below once it stands). Without a positive per-step term, a segment that falls over early sums to more than one that stands, and
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


def baselines(episodes: int = 10, seed: int = 1) -> dict[str, list[float]]:
    """The criterion's episode sums for two policies that were taught nothing: all-zero and uniformly random
    actions, on the seeds ``framework/evaluation.py`` uses (episode i reset with seed + i), as a yardstick for a
    trained policy's ``criterion_returns``."""
    from rlhf.custom_reward import CustomReward, EpisodeSteps
    from rlhf.envs import get_physics_state, make_env

    criterion = CustomReward(f"{__file__}:raised_leg", "Ant-v5")
    env = make_env("Ant-v5", seed=seed)
    env.action_space.seed(seed)
    out: dict[str, list[float]] = {"zero actions": [], "random actions": []}
    for name, act in (("zero actions", lambda: np.zeros(env.action_space.shape, np.float32)),
                      ("random actions", env.action_space.sample)):  # fmt: skip
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            episode, done = EpisodeSteps(), False
            while not done:
                action, physics = act(), get_physics_state(env)
                next_obs, _, terminated, truncated, _ = env.step(action)
                episode.add(obs, action, next_obs, physics)
                obs, done = next_obs, terminated or truncated
            out[name].append(float(criterion(episode.segment()).sum()))
    env.close()
    criterion.close()
    return out


if __name__ == "__main__":  # uv run python examples/ant_raise_leg.py: the yardstick for evaluation.py's scores
    for policy, scores in baselines().items():
        print(f"{policy}: criterion per episode {np.mean(scores):.1f} ± {np.std(scores, ddof=1):.1f} "
              f"(min {min(scores):.1f}, max {max(scores):.1f}; {len(scores)} episodes)")  # fmt: skip
