"""SAC on the true environment reward: the oracle baseline for sac_rlhf.py, with the same networks, updates,
replay buffer, evaluation, logging and checkpoints (CleanRL's sac_continuous_action.py).
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlhf.agent import SAC, SACConfig
from rlhf.checkpoint import rng_state, save_state
from rlhf.cli import run_cli
from rlhf.config import ConfigError, GeneralArgs, SACArgs
from rlhf.envs import check_render_mode, configure_headless_rendering, env_info, get_physics_state, make_env
from rlhf.evaluate import EarlyStopping, evaluate_policy
from rlhf.replay import ReplayBuffer
from rlhf.tensors import to_tensor
from rlhf.tracking import (
    EpisodeWindow,
    ProgressBar,
    Tracker,
    make_run_dir,
    run_name,
    seed_everything,
    select_device,
    setup_logging,
)
from rlhf.video import EvaluationRecorder

log = logging.getLogger("cleanrlhf")


@dataclass
class Args(SACArgs, GeneralArgs):
    """SAC on the true reward."""


def validate(args: Args) -> None:
    for name in (
        "total_timesteps",
        "buffer_size",
        "batch_size",
        "evaluation_frequency",
        "evaluation_episodes",
        "log_frequency",
        "policy_frequency",
        "target_network_frequency",
    ):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.learning_starts < args.total_timesteps:
        raise ValueError(f"--learning-starts must be in [0, --total-timesteps), got {args.learning_starts}")
    check_render_mode(args.render_mode)
    if args.capture_video and args.render_mode == "human":
        raise ValueError("--capture-video and --render-mode human cannot be used together in one run")


def main(args: Args) -> dict[str, float]:
    configure_headless_rendering(args.render_mode)
    setup_logging(args.log_level)
    try:
        validate(args)
        env = make_env(args.env_id, seed=args.seed, render_mode="human" if args.render_mode == "human" else None)
        video_size = {"width": 240, "height": 240} if args.capture_video else {}
        eval_env = make_env(args.env_id, args.seed + 1, "rgb_array" if args.capture_video else None, **video_size)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    info = env_info(env)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed, args.torch_deterministic)
    device = select_device(args.cuda)
    rng = np.random.default_rng(args.seed)
    agent = SAC(info.obs_dim, info.act_dim, info.action_low, info.action_high, SACConfig.from_args(args)).to(device)
    rb = ReplayBuffer(args.buffer_size, info.obs_dim, info.act_dim, info.physics_state_dim)
    run_dir = make_run_dir(args.runs_dir, run_name(args.env_id, args.exp_name or Path(__file__).stem, args.seed))
    tracker = Tracker(run_dir, args, args.track, args.wandb_project_name, args.wandb_entity)

    obs, _ = env.reset(seed=args.seed)
    episode_id, episode_step, episode_return = 0, 0, 0.0
    train_metrics: dict[str, torch.Tensor] = {}
    final_metrics: dict[str, float] = {}
    last_eval = float("nan")
    early_stopping = EarlyStopping(
        args.early_stopping, args.early_stopping_step, args.early_stop_patience, args.early_stopping_mean
    )
    bar = ProgressBar(args.total_timesteps, disable=not args.progress_bar)
    window = EpisodeWindow(0)

    eval_video = (
        EvaluationRecorder(run_dir / "videos" / "eval", eval_env, tracker.eval_video) if args.capture_video else None
    )

    @functools.lru_cache(maxsize=1)  # the final evaluation reuses one that just ran at the same step
    def evaluate(step: int) -> dict[str, float]:
        policy = lambda o: agent.act(o, deterministic=True)  # noqa: E731
        seed = args.seed + 10_000 + step
        return evaluate_policy(policy, eval_env, args.evaluation_episodes, seed, step, eval_video)

    step = 0
    completed = interrupted = False
    try:
        for step in range(args.total_timesteps):
            action = env.action_space.sample() if step < args.learning_starts else agent.act(obs)
            physics_state = get_physics_state(env)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rb.add(obs, action, next_obs, reward, terminated, truncated, episode_id, episode_step, physics_state)
            episode_return += float(reward)
            episode_step += 1
            obs = next_obs
            if terminated or truncated:
                window.episode(episode_return, episode_step)
                obs, _ = env.reset()
                episode_id, episode_step, episode_return = episode_id + 1, 0, 0.0

            if step >= args.learning_starts:
                batch = rb.sample_any(args.batch_size, rng)
                t = {k: to_tensor(v, device) for k, v in batch.items()}
                train_metrics |= agent.update(
                    t["obs"], t["actions"], t["true_rewards"], t["next_obs"], t["terminated"], step
                )

            if (step + 1) % args.log_frequency == 0:
                tracker.scalars(
                    {**window.flush(step + 1), "charts/alpha": float(agent.alpha), **train_metrics}, step + 1
                )
            if (step + 1) % args.evaluation_frequency == 0:
                eval_metrics = evaluate(step + 1)
                last_eval = eval_metrics["eval/mean_return"]
                tracker.scalars(eval_metrics, step + 1)
                if early_stopping.should_stop(step + 1, last_eval):
                    log.info("early stopping at step %d (eval return %.1f)", step + 1, last_eval)
                    break
            bar.update(1, eval=last_eval)
        completed = True
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted at step %d; saving a checkpoint", step)
    finally:
        bar.close()
        if completed:
            final_metrics.update(evaluate(step + 1))
            tracker.scalars(final_metrics, step + 1)
        if completed or interrupted:
            save_state(
                run_dir / "checkpoints" / "final",
                {
                    "algorithm": "sac",
                    "env_id": args.env_id,
                    "step": step + 1,
                    "agent": agent.state_dict(),
                    "q_optimizer": agent.q_optimizer.state_dict(),
                    "actor_optimizer": agent.actor_optimizer.state_dict(),
                    "alpha_optimizer": agent.a_optimizer.state_dict() if agent.a_optimizer else None,
                    "rng": rng_state({"buffer": rng}),
                    "args": dict(args.__dict__),
                },
            )
        tracker.close()
        env.close()
        eval_env.close()
    if interrupted:
        raise KeyboardInterrupt
    return {**final_metrics, "step": float(step + 1), "run_dir": str(run_dir)}


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
