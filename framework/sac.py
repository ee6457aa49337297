"""SAC on the true environment reward: the oracle baseline for sac_rlhf.py, with the same networks, updates,
replay buffer, evaluation, logging and checkpoints (CleanRL's sac_continuous_action.py).

Read top to bottom: flags, set-up, then per step: act (random before --learning-starts), store the transition,
a SAC update on the true reward; the run (rlhf.run) logs, evaluates, stops early and checkpoints.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from rlhf.agent import SAC, SACConfig
from rlhf.cli import run_cli
from rlhf.config import GeneralArgs, ResumeArgs, SACArgs, check_flags
from rlhf.env_state import EpisodeBoundaryState
from rlhf.envs import env_info, get_physics_state, make_env
from rlhf.replay import ReplayBuffer
from rlhf.run import Run
from rlhf.tensors import to_tensor


@dataclass
class Args(ResumeArgs, SACArgs, GeneralArgs):
    """SAC on the true reward."""


def main(args: Args) -> dict[str, float]:
    run = Run(args, __file__)
    args = run.args
    with run.checking_flags():
        check_flags(args)
        env = make_env(args.env_id, seed=args.seed, render_mode="human" if args.render_mode == "human" else None)
        eval_env = run.make_eval_env()
        run.close_at_end(env, eval_env)
        info = env_info(env)
        device = run.torch_setup()
        (rng,) = run.generators("buffer")
        agent = SAC(info.obs_dim, info.act_dim, info.action_low, info.action_high, SACConfig.from_args(args)).to(device)
        rb = ReplayBuffer(args.buffer_size, info.obs_dim, info.act_dim, info.physics_state_dim)
        run.register("agent", agent)
        run.register("optimizers", agent.optimizers)
        run.register("env", EpisodeBoundaryState(env))
        run.register("replay_buffer", rb, large=True)
        start_step = run.begin(eval_env, lambda o: agent.act(o, deterministic=True), args.total_timesteps)

    need_reset = True  # the environment is reset at the top of the loop, so checkpoints fall between episodes
    seed_reset = not run.resumed  # a resumed environment continues from its restored random state instead
    episode_id = int(rb.episode_id[: rb.size].max()) + 1 if rb.size else 0
    episode_step, episode_return = 0, 0.0
    train_metrics: dict[str, torch.Tensor] = {}
    with run:
        for step in range(start_step, args.total_timesteps):
            if need_reset:
                obs, _ = env.reset(seed=args.seed if seed_reset else None)
                need_reset = seed_reset = False
            action = env.action_space.sample() if step < args.learning_starts else agent.act(obs)
            physics_state = get_physics_state(env)  # the state of ``obs``, to re-render this step later
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rb.add(obs, action, next_obs, reward, terminated, truncated, episode_id, episode_step, physics_state)
            episode_return += float(reward)
            episode_step += 1
            obs = next_obs
            if terminated or truncated:
                run.episode(episode_return, episode_step)
                need_reset, episode_id, episode_step, episode_return = True, episode_id + 1, 0, 0.0

            if step >= args.learning_starts:
                batch = rb.sample_any(args.batch_size, rng)
                t = {k: to_tensor(v, device) for k, v in batch.items()}
                train_metrics |= agent.update(
                    t["obs"], t["actions"], t["true_rewards"], t["next_obs"], t["terminated"], step
                )
            if run.step_done(step + 1, {"charts/alpha": agent.alpha, **train_metrics}, boundary=need_reset):
                break
    return run.result


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
