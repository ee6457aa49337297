"""PPO on the true environment reward: the oracle baseline for pref_ppo.py, with the same networks, rollouts,
observation normalisation, evaluation, logging and checkpoints (CleanRL's ppo_continuous_action.py).

Read top to bottom: flags, checks, set-up, then per iteration: (1) a rollout of --num-steps steps in --num-envs
environments, (2) rewards scaled and GAE (terminations do not bootstrap, truncations bootstrap from V(final
observation)), (3) the clipped PPO update, (4) logging, evaluation, early stopping; a final checkpoint at the end.
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlhf.checkpoint import rng_state, save_state
from rlhf.cli import run_cli
from rlhf.config import ConfigError, GeneralArgs
from rlhf.envs import check_render_mode, configure_headless_rendering, env_info, make_env
from rlhf.evaluate import EarlyStopping, evaluate_policy
from rlhf.ppo_agent import PPOAgent, PPOArgs, RewardScaler, check_ppo_args, ppo_update
from rlhf.rollout import RolloutBuffer, final_observations, make_vector_env
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
class Args(PPOArgs, GeneralArgs):
    """PPO on the true reward."""


def validate(args: Args) -> None:
    """Flag checks that need no environment; raise ValueError naming the flag."""
    for name in ("total_timesteps", "evaluation_frequency", "evaluation_episodes", "log_frequency"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    check_ppo_args(args)
    check_render_mode(args.render_mode)
    if args.total_timesteps < args.num_envs * args.num_steps:
        raise ValueError(
            f"--total-timesteps ({args.total_timesteps}) is less than one rollout "
            f"(--num-envs × --num-steps = {args.num_envs * args.num_steps})"
        )
    if args.capture_video and args.render_mode == "human":
        raise ValueError("--capture-video and --render-mode human cannot be used together in one run")


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (before, after] (steps advance by a whole rollout at a time)."""
    return after // every > before // every


def main(args: Args) -> dict[str, float]:
    configure_headless_rendering(args.render_mode)
    setup_logging(args.log_level)
    try:
        validate(args)
        envs = make_vector_env(args.env_id, args.num_envs, args.seed, "human" if args.render_mode == "human" else None)
        video_size = {"width": 240, "height": 240} if args.capture_video else {}
        eval_env = make_env(args.env_id, args.seed + 1, "rgb_array" if args.capture_video else None, **video_size)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    info = env_info(envs.envs[0])
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed, args.torch_deterministic)
    device = select_device(args.cuda)
    rng = np.random.default_rng(args.seed)

    agent = PPOAgent(info.obs_dim, info.act_dim, info.action_low, info.action_high).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size
    rollout = RolloutBuffer(args.num_steps, args.num_envs, info.obs_dim, info.act_dim)
    reward_scaler = RewardScaler(args.num_envs, args.gamma)
    run_dir = make_run_dir(args.runs_dir, run_name(args.env_id, args.exp_name or Path(__file__).stem, args.seed))
    tracker = Tracker(run_dir, args, args.track, args.wandb_project_name, args.wandb_entity)

    def normalise(obs: np.ndarray, update: bool) -> torch.Tensor:
        if update:
            agent.obs_norm.update(obs)
        return agent.obs_norm(torch.as_tensor(obs, dtype=torch.float32, device=device))

    eval_video = (
        EvaluationRecorder(run_dir / "videos" / "eval", eval_env, tracker.eval_video) if args.capture_video else None
    )

    @functools.lru_cache(maxsize=1)  # the final evaluation reuses one that just ran at the same step
    def evaluate(step: int) -> dict[str, float]:
        seed = args.seed + 10_000 + step
        return evaluate_policy(agent.act, eval_env, args.evaluation_episodes, seed, step, eval_video)

    next_obs, _ = envs.reset(seed=args.seed)
    episode_return, episode_length = np.zeros(args.num_envs), np.zeros(args.num_envs, np.int64)
    window = EpisodeWindow(0)
    early_stopping = EarlyStopping(
        args.early_stopping, args.early_stopping_step, args.early_stop_patience, args.early_stopping_mean
    )
    bar = ProgressBar(num_iterations * batch_size, disable=not args.progress_bar)
    final_metrics: dict[str, float] = {}
    last_eval = float("nan")
    global_step = 0
    completed = interrupted = False
    try:
        for iteration in range(num_iterations):
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = (1.0 - iteration / num_iterations) * args.learning_rate
            start_step = global_step

            # (1) rollout
            for t in range(args.num_steps):
                rollout.raw_obs[t] = next_obs
                with torch.no_grad():
                    obs_t = normalise(next_obs, update=True)
                    action, logprob, _, value = agent.get_action_and_value(obs_t)
                action = action.cpu().numpy()
                env_action = agent.clip_action(action)
                next_obs, reward, terminated, truncated, infos = envs.step(env_action)
                real_next = final_observations(next_obs, infos)
                truncated_only = truncated & ~terminated
                if truncated_only.any():  # bootstrap value of the true final observation
                    with torch.no_grad():
                        final_v = agent.get_value(normalise(real_next[truncated_only], update=False))
                    rollout.final_values[t, truncated_only] = final_v.cpu().numpy()
                rollout.obs[t], rollout.actions[t], rollout.env_actions[t] = obs_t.cpu().numpy(), action, env_action
                rollout.logprobs[t], rollout.values[t] = logprob.cpu().numpy(), value.cpu().numpy()
                rollout.true_rewards[t], rollout.terminated[t], rollout.truncated[t] = reward, terminated, truncated
                rollout.next_obs[t] = real_next
                global_step += args.num_envs
                rollout.steps[t] = global_step - args.num_envs + np.arange(args.num_envs)
                episode_return += reward
                episode_length += 1
                for i in np.flatnonzero(terminated | truncated):
                    window.episode(float(episode_return[i]), int(episode_length[i]))
                    episode_return[i], episode_length[i] = 0.0, 0
            with torch.no_grad():
                rollout.set_next_values(agent.get_value(normalise(next_obs, update=False)).cpu().numpy())

            # (2) rewards and advantages
            rewards = reward_scaler(rollout.true_rewards, rollout.terminated | rollout.truncated)
            advantages, returns = rollout.advantages(rewards, args.gamma, args.gae_lambda)

            # (3) PPO update on the flattened rollout
            flat = {
                "obs": rollout.obs.reshape(batch_size, -1),
                "actions": rollout.actions.reshape(batch_size, -1),
                "logprobs": rollout.logprobs.reshape(-1),
                "advantages": advantages.reshape(-1),
                "returns": returns.reshape(-1),
                "values": rollout.values.reshape(-1),
            }
            batch = {k: torch.as_tensor(v, device=device) for k, v in flat.items()}
            train_metrics = ppo_update(agent, optimizer, batch, args, rng)

            # (4) logging, evaluation, early stopping
            if crossed(start_step, global_step, args.log_frequency) or iteration == num_iterations - 1:
                lr = {"charts/learning_rate": optimizer.param_groups[0]["lr"]}
                tracker.scalars({**window.flush(global_step), **lr, **train_metrics}, global_step)
            if crossed(start_step, global_step, args.evaluation_frequency):
                eval_metrics = evaluate(global_step)
                last_eval = eval_metrics["eval/mean_return"]
                tracker.scalars(eval_metrics, global_step)
                if early_stopping.should_stop(global_step, last_eval):
                    log.info("early stopping at step %d (eval return %.1f)", global_step, last_eval)
                    break
            bar.update(batch_size, eval=last_eval)
        completed = True
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted at step %d; saving a checkpoint", global_step)
    finally:
        bar.close()
        if completed:
            final_metrics.update(evaluate(global_step))
            tracker.scalars(final_metrics, global_step)
        if completed or interrupted:
            save_state(
                run_dir / "checkpoints" / "final",
                {
                    "algorithm": "ppo",
                    "env_id": args.env_id,
                    "step": global_step,
                    "agent": agent.state_dict(),  # includes the observation-normalisation statistics
                    "optimizer": optimizer.state_dict(),
                    "reward_scaler": reward_scaler.state_dict(),
                    "rng": rng_state({"ppo": rng}),
                    "args": dict(args.__dict__),
                },
            )
        tracker.close()
        envs.close()
        eval_env.close()
    if interrupted:
        raise KeyboardInterrupt
    return {**final_metrics, "step": float(global_step), "run_dir": str(run_dir)}


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
