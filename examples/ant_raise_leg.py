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

``python examples/ant_raise_leg.py`` prints the criterion's yardsticks for a trained policy's score
(``evaluation.py``): zero actions (the ant stands, about 1000), random actions (it falls), and the best constant
action a cross-entropy search on the criterion itself finds, which shows the leg can be held up while the ant stays
up (no teacher involved).
"""

from __future__ import annotations

import numpy as np

FEET = ("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom")  # front-left first
ALIVE = 1.0  # per step alive, in metres of leg height; see the module docstring


def raised_leg(t) -> np.ndarray:
    """(N, H) per-step reward: height of the front-left foot above the highest other foot, in metres, plus ALIVE."""
    z = t.geom_positions(FEET)[..., 2]  # (N, H, 4) heights
    return ALIVE + z[..., 0] - z[..., 1:].max(axis=-1)


def episode_score(env, criterion, act, seed: int, max_steps: int | None = None) -> float:
    """The criterion's sum over one episode (reset with ``seed``) of the policy ``act(obs)``, or over its first
    ``max_steps`` steps."""
    from rlhf.custom_reward import EpisodeSteps
    from rlhf.envs import get_physics_state

    obs, _ = env.reset(seed=seed)
    episode, done = EpisodeSteps(), False
    while not done and (max_steps is None or len(episode.steps["obs"]) < max_steps):
        action, physics = act(obs), get_physics_state(env)
        next_obs, _, terminated, truncated, _ = env.step(action)
        episode.add(obs, action, next_obs, physics)
        obs, done = next_obs, terminated or truncated
    return float(criterion(episode.segment()).sum())


def best_constant_action(env, criterion, iterations: int = 6, population: int = 40, elite: int = 8,
                         horizon: int = 300, seed: int = 0) -> np.ndarray:  # fmt: skip
    """The constant action the cross-entropy method finds for the criterion, each candidate held for the first
    ``horizon`` steps of one episode: a policy no teacher was involved in, searched on the criterion itself, to
    show what the criterion asks is physically there (how high the leg goes, staying up)."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    mean, std = np.zeros(low.shape), (high - low) / 2
    for _ in range(iterations):
        candidates = np.clip(mean + std * rng.standard_normal((population, len(mean))), low, high).astype(np.float32)
        scores = [episode_score(env, criterion, lambda _obs, a=a: a, seed, horizon) for a in candidates]
        best = candidates[np.argsort(scores)[-elite:]]
        mean, std = best.mean(axis=0), best.std(axis=0) + 0.05  # a floor keeps the search from collapsing early
    return mean.astype(np.float32)


def baselines(episodes: int = 10, seed: int = 1) -> dict[str, list[float]]:
    """The criterion's episode sums for policies that were taught nothing: all-zero actions, uniformly random
    actions, and the best constant action of a cross-entropy search on the criterion (:func:`best_constant_action`),
    on the seeds ``framework/evaluation.py`` uses (episode i reset with seed + i), as yardsticks for a trained
    policy's ``criterion_returns``: the first two are what doing nothing scores, the last what holding the leg up
    scores."""
    from rlhf.custom_reward import CustomReward
    from rlhf.envs import make_env

    criterion = CustomReward(f"{__file__}:raised_leg", "Ant-v5")
    env = make_env("Ant-v5", seed=seed)
    env.action_space.seed(seed)
    zero = np.zeros(env.action_space.shape, np.float32)
    constant = best_constant_action(env, criterion, seed=seed)
    policies = {
        "zero actions": lambda _obs: zero,
        "random actions": lambda _obs: env.action_space.sample(),
        f"constant action ({' '.join(f'{x:+.2f}' for x in constant)}), cross-entropy search": lambda _obs: constant,
    }
    out = {name: [episode_score(env, criterion, act, seed + i) for i in range(episodes)]
           for name, act in policies.items()}  # fmt: skip
    env.close()
    criterion.close()
    return out


if __name__ == "__main__":  # uv run python examples/ant_raise_leg.py: the yardstick for evaluation.py's scores
    for policy, scores in baselines().items():
        print(f"{policy}: criterion per episode {np.mean(scores):.1f} ± {np.std(scores, ddof=1):.1f} "
              f"(min {min(scores):.1f}, max {max(scores):.1f}; {len(scores)} episodes: "
              f"{' '.join(f'{x:.0f}' for x in scores)})")  # fmt: skip
