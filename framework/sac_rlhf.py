"""PEBBLE (Lee et al. 2021): SAC on a reward ensemble learned from a teacher's preferences between segments.

Read top to bottom: flags, checks, set-up, then the loop: (1) unsupervised pre-exploration on a state-entropy
reward, (2) acting with the policy, (3) feedback sessions on the schedule — select queries, ask the teacher
(simulated, or people in the browser), train the reward ensemble (+ SURF), relabel the replay buffer — (4) SAC
updates on the learned reward (+ RUNE's bonus), (5) logging, evaluation on the true return, early stopping,
checkpoints.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlhf.agent import SAC, SACConfig
from rlhf.checkpoint import (
    CheckpointError,
    load_bundle,
    load_state,
    restore_rng_state,
    rng_state,
    save_bundle,
    save_state,
)
from rlhf.cli import resumed_args, run_cli
from rlhf.config import (
    ConfigError,
    ExplorationArgs,
    FeedbackArgs,
    GeneralArgs,
    ResumeArgs,
    RuneArgs,
    SACArgs,
    SurfArgs,
    check_feedback_args,
)
from rlhf.envs import (
    check_render_mode,
    configure_headless_rendering,
    env_info,
    env_rng_state,
    get_physics_state,
    make_env,
    restore_env_rng_state,
)
from rlhf.evaluate import EarlyStopping, evaluate_policy
from rlhf.exploration import RunningStd, state_entropy_reward
from rlhf.feedback import FeedbackStats, learn_from_answers, pearson, session_config
from rlhf.preferences import PreferenceDataset
from rlhf.queries import select_from_reward_cache
from rlhf.replay import ReplayBuffer
from rlhf.reward_model import RewardEnsemble, predict_member_rewards
from rlhf.schedule import session_steps
from rlhf.surf import Surf, check_surf_args, surf_config
from rlhf.teacher_factory import check_server_url, feedback_report, human_teacher, simulated_teacher
from rlhf.tensors import to_tensor
from rlhf.tracking import (
    EpisodeWindow,
    ProgressBar,
    Tracker,
    make_run_dir,
    recorded_args,
    run_name,
    seed_everything,
    select_device,
    setup_logging,
)
from rlhf.video import EvaluationRecorder, QueryClipRecorder

log = logging.getLogger("cleanrlhf")


@dataclass
class Args(ResumeArgs, SurfArgs, RuneArgs, ExplorationArgs, FeedbackArgs, SACArgs, GeneralArgs):
    """PEBBLE: SAC on a reward learned from preferences."""


def validate(args: Args) -> None:
    """Flag checks that need no environment; raise ValueError naming the flag."""
    check_feedback_args(args)
    check_surf_args(args)
    check_render_mode(args.render_mode)
    for name in (
        "buffer_size",
        "batch_size",
        "explore_batch_size",
        "policy_frequency",
        "target_network_frequency",
        "actor_and_q_net_hidden_dim",
        "actor_and_q_net_hidden_layers",
    ):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.learning_starts < 0 or args.explore_learning_starts < 0:
        raise ValueError("--learning-starts and --explore-learning-starts must be >= 0")
    explore = args.total_explore_steps if args.unsupervised_exploration else 0
    if explore >= args.total_timesteps:
        raise ValueError(
            f"--total-explore-steps ({explore}) leaves no steps of --total-timesteps "
            f"({args.total_timesteps}) for learning from feedback"
        )
    if args.learning_starts >= args.total_timesteps:
        raise ValueError(f"--learning-starts ({args.learning_starts}) must be below --total-timesteps")
    if args.teacher_feedback_mode == "human":
        check_server_url(args.feedback_server_url)


def main(args: Args) -> dict[str, float]:
    configure_headless_rendering(args.render_mode)
    setup_logging(args.log_level)
    try:  # everything that can reject the flags runs before the run directory exists
        if args.resume:
            args = resumed_args(args)
        validate(args)
        env = make_env(args.env_id, seed=args.seed, render_mode="human" if args.render_mode == "human" else None)
        info = env_info(env)
        H = args.trajectory_length
        if info.max_episode_steps < H:
            raise ValueError(
                f"--trajectory-length {H} is longer than {args.env_id}'s episodes ({info.max_episode_steps} steps)"
            )
        explore_steps = args.total_explore_steps if args.unsupervised_exploration else 0
        num_sessions = args.teacher_feedback_total_queries // args.teacher_feedback_num_queries_per_session
        sessions = session_steps(
            args.teacher_feedback_schedule,
            max(explore_steps, args.learning_starts),
            args.total_timesteps,
            num_sessions,
            args.teacher_feedback_exponential_lambda,
        )
        video_size = {"width": 240, "height": 240} if args.capture_video else {}
        eval_env = make_env(args.env_id, args.seed + 1, "rgb_array" if args.capture_video else None, **video_size)
        if args.threads:
            torch.set_num_threads(args.threads)
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)
        rng_buffer, rng_queries, rng_teacher = (
            np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(3)
        )
        np_rngs = {"buffer": rng_buffer, "queries": rng_queries, "teacher": rng_teacher}

        agent = SAC(info.obs_dim, info.act_dim, info.action_low, info.action_high, SACConfig.from_args(args))
        agent = agent.to(device)
        ensemble = RewardEnsemble.from_args(args, info.obs_dim, info.act_dim).to(device)
        reward_optimizer = torch.optim.Adam(ensemble.parameters(), lr=args.teacher_learning_rate)
        M = args.reward_net_ensemble_size
        rb = ReplayBuffer(args.buffer_size, info.obs_dim, info.act_dim, info.physics_state_dim, M)
        prefs = PreferenceDataset(H, info.obs_dim, info.act_dim, info.physics_state_dim)
        session_cfg = session_config(args)
        stats = FeedbackStats()
        surf = Surf(surf_config(args), H) if args.surf else None

        start_step = 0
        if args.exploration_load and not args.resume:
            try:
                agent.load_state_dict(load_state(Path(args.path_to_model).with_suffix(""))["agent"])
                rb.load_state_dict(load_state(Path(args.path_to_replay_buffer).with_suffix("")))
            except (CheckpointError, KeyError, RuntimeError) as e:
                raise ValueError(f"--exploration-load: cannot load the exploration checkpoint: {e}") from e
            start_step = explore_steps
            if rb.size < H:
                raise ValueError(f"the loaded replay buffer holds {rb.size} transitions, fewer than one segment")
            log.info("loaded %d exploration transitions; skipping %d exploration steps", rb.size, explore_steps)
        resume = None
        if args.resume:
            run_dir = Path(args.resume).resolve()
            try:
                resume = load_bundle(run_dir / "checkpoints" / "resume", ("state", "replay_buffer"))
                restore_training_state(resume, agent, ensemble, reward_optimizer, rb, prefs, stats, np_rngs, env)
            except (CheckpointError, KeyError, RuntimeError) as e:
                raise ValueError(f"--resume {args.resume}: {e}") from e
            start_step = resume["state"]["step"]
            log.info("resuming %s at step %d with %d labels", run_dir, start_step, len(prefs))
        else:
            run_dir = make_run_dir(
                args.runs_dir, run_name(args.env_id, args.exp_name or Path(__file__).stem, args.seed)
            )
        server = None
        if args.teacher_feedback_mode == "human":
            teacher, server = human_teacher(
                args,
                run_dir,
                completed_sessions=set(prefs.session.tolist()),
                next_session=resume["state"]["next_session"] if resume else 0,
            )
        else:
            teacher = simulated_teacher(args, rng_teacher)
    except ValueError as e:
        if "run_dir" in locals() and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # nothing was started
        raise ConfigError(str(e)) from e

    tracker = Tracker(run_dir, args, args.track, args.wandb_project_name, args.wandb_entity)
    log.info("run directory %s; feedback sessions at steps %s", run_dir, sessions.tolist())
    query_clips = QueryClipRecorder(run_dir / "videos" / "queries", args.env_id) if args.capture_video else None
    eval_video = (
        EvaluationRecorder(run_dir / "videos" / "eval", eval_env, tracker.eval_video) if args.capture_video else None
    )

    def reward_fn(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return predict_member_rewards(ensemble, obs, actions)  # (n, M), cached in the buffer

    @functools.lru_cache(maxsize=1)  # the final evaluation reuses one that just ran at the same step
    def evaluate(step: int) -> dict[str, float]:
        policy = lambda o: agent.act(o, deterministic=True)  # noqa: E731
        seed = args.seed + 10_000 + step
        return evaluate_policy(policy, eval_env, args.evaluation_episodes, seed, step, eval_video)

    def learn(answered, step: int, idle_seconds: float) -> None:
        """Train the reward ensemble on the answered sessions' labels and relabel the replay buffer."""
        t0 = time.time()
        for answers in answered:
            if query_clips:
                query_clips.record(answers.seg_a, answers.seg_b, answers.labels, answers.session, step)
        rb.relabel_pending(reward_fn)
        labelled = len(prefs) + sum(int((~np.isnan(a.labels)).sum()) for a in answered)
        cached = functools.partial(select_from_reward_cache, rb)  # rb was just relabelled with this ensemble
        hooks = surf.prepare(rb, ensemble, labelled, rng_queries, selector=cached) if surf else {}  # SURF's hooks
        metrics = learn_from_answers(
            answered, prefs, stats, ensemble, reward_optimizer, session_cfg, rng_queries, **hooks
        )
        if surf:
            metrics["reward_model/surf_confident_fraction"] = surf.last_confident_fraction
        rb.relabel(reward_fn)
        true_recent, learned_recent = rb.recent(10_000)
        metrics["reward_model/pearson"] = pearson(learned_recent.mean(1), true_recent)
        metrics["reward_model/ensemble_std"] = float(learned_recent.std(1).mean())
        metrics["feedback/session_seconds"] = time.time() - t0
        metrics["feedback/wait_seconds"] = idle_seconds  # training stood still waiting for answers
        if getattr(teacher, "render_seconds", None):
            metrics["feedback/clip_render_seconds"] = float(np.mean(teacher.render_seconds))
        tracker.scalars({**metrics, **stats.as_scalars()}, step)
        log.info(
            "step %d: %d labels, reward model val accuracy %.3f",
            step,
            stats.total_labels,
            metrics["reward_model/val_accuracy"],
        )

    def save_checkpoint(step: int, final: bool) -> Path:
        """The resumable bundle (everything + the replay buffer) and, at the end, the light ``final`` checkpoint."""
        state = {
            "algorithm": "sac_rlhf", "env_id": args.env_id, "step": step, "next_session": next_session,
            "reward_updates": reward_updates, "agent": agent.state_dict(),
            "q_optimizer": agent.q_optimizer.state_dict(), "actor_optimizer": agent.actor_optimizer.state_dict(),
            "alpha_optimizer": agent.a_optimizer.state_dict() if agent.a_optimizer else None,
            "reward_ensemble": ensemble.state_dict(), "reward_optimizer": reward_optimizer.state_dict(),
            "preferences": prefs.state_dict(), "feedback_stats": dict(stats.__dict__), "rng": rng_state(np_rngs),
            "env_rng": env_rng_state(env), "episode_id": episode_id, "explore_norm": vars(explore_norm),
            "early_stopping": vars(early_stopping), "last_eval": last_eval, "args": recorded_args(args)}  # fmt: skip
        save_bundle(run_dir / "checkpoints" / "resume", {"state": state, "replay_buffer": rb.state_dict()})
        if final:
            save_state(run_dir / "checkpoints" / "final", state)
        return run_dir / "checkpoints"

    # ---- the loop ---------------------------------------------------------------------------------------------
    need_reset = True  # the environment is reset at the top of the loop, so checkpoints fall between episodes
    seed_reset = resume is None  # a resumed environment continues from its restored random state instead
    episode_id = int(rb.episode_id[: rb.size].max()) + 1 if rb.size else 0
    episode_step, episode_return = 0, 0.0
    explore_norm = RunningStd()
    next_session = reward_updates = 0
    waiting = False  # a session was just asked and --feedback-wait holds training until it is answered
    idle_seconds = 0.0
    last_eval = float("nan")
    early_stopping = EarlyStopping(
        args.early_stopping, args.early_stopping_step, args.early_stop_patience, args.early_stopping_mean
    )
    train_metrics: dict[str, torch.Tensor] = {}
    final_metrics: dict[str, float] = {}
    if resume:
        st = resume["state"]
        next_session, reward_updates, last_eval = st["next_session"], st["reward_updates"], st["last_eval"]
        vars(explore_norm).update(st["explore_norm"])
        vars(early_stopping).update(st["early_stopping"])
    next_checkpoint = (start_step // args.checkpoint_frequency + 1) * args.checkpoint_frequency
    bar = ProgressBar(args.total_timesteps, initial=start_step, disable=not args.progress_bar)
    window = EpisodeWindow(start_step)
    step = start_step
    completed = interrupted = False
    try:
        for step in range(start_step, args.total_timesteps):
            if need_reset:
                obs, _ = env.reset(seed=args.seed if seed_reset else None)
                need_reset = seed_reset = False
            exploring = step < explore_steps
            # (2) act: random actions only before any agent exists to act with
            if exploring:
                random_phase = step < args.explore_learning_starts
            else:
                random_phase = not args.unsupervised_exploration and step < args.learning_starts
            action = env.action_space.sample() if random_phase else agent.act(obs)
            physics_state = get_physics_state(env)  # the state of ``obs``, to re-render this step later
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rb.add(obs, action, next_obs, reward, terminated, truncated, episode_id, episode_step, physics_state)
            episode_return += float(reward)
            episode_step += 1
            obs = next_obs
            if terminated or truncated:
                window.episode(episode_return, episode_step)
                need_reset, episode_id, episode_step, episode_return = True, episode_id + 1, 0, 0.0

            if exploring:
                # (1) unsupervised pre-exploration: SAC on the normalised k-NN state-entropy reward
                if step >= args.explore_learning_starts:
                    batch = rb.sample_any(args.explore_batch_size, rng_buffer)
                    t = {k: to_tensor(v, device) for k, v in batch.items()}
                    visited = to_tensor(rb.next_obs[: rb.size], device)
                    r_int = state_entropy_reward(t["next_obs"], visited, explore_norm)
                    train_metrics |= agent.update(t["obs"], t["actions"], r_int, t["next_obs"], t["terminated"], step)
                if step + 1 == explore_steps:
                    save_state(run_dir / "exploration" / "agent", {"agent": agent.state_dict(), "step": step + 1})
                    save_state(run_dir / "exploration" / "replay_buffer", rb.state_dict())
                    log.info("saved the exploration agent and replay buffer to %s", run_dir / "exploration")
            else:
                # (3) feedback session on the schedule: ask now, learn from the answers when they are in
                if next_session < len(sessions) and step >= sessions[next_session]:
                    rb.relabel_pending(reward_fn)  # the cache then holds the current ensemble's r̂ for every step
                    pool = session_cfg.num_queries * session_cfg.pool_multiplier
                    seg_a, seg_b = select_from_reward_cache(
                        rb, session_cfg.num_queries, pool, H, session_cfg.strategy, rng_queries
                    )
                    teacher.submit(seg_a, seg_b, next_session)
                    next_session += 1
                    waiting = args.feedback_wait
                if next_session > 0 and (waiting or step % 100 == 0):  # a human's answers may come in any time
                    t_wait = time.time()
                    answered = teacher.collect(wait=waiting, timeout=args.feedback_timeout)
                    idle_seconds, waiting = idle_seconds + time.time() - t_wait, False
                    if answered:
                        learn(answered, step, idle_seconds)
                        idle_seconds = 0.0
                        if reward_updates == 0 and explore_steps:
                            agent.reset_critics()  # its Q estimated the intrinsic reward (PEBBLE)
                        reward_updates += 1
                # (4) SAC update on the learned reward, once there is one
                if reward_updates > 0:
                    if rb.pending >= 64:
                        rb.relabel_pending(reward_fn)
                    batch = rb.sample(args.batch_size, rng_buffer)
                    t = {k: to_tensor(v, device) for k, v in batch.items()}
                    rewards = t["reward_mean"]
                    if args.rune:  # RUNE: beta_t = beta_0 (1 - rho)^t, t = the step at which it is applied
                        rewards = rewards + args.rune_beta * (1 - args.rune_beta_decay) ** step * t["reward_std"]
                    train_metrics |= agent.update(t["obs"], t["actions"], rewards, t["next_obs"], t["terminated"], step)

            # (5) logging, evaluation, early stopping
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
            if need_reset and step + 1 >= next_checkpoint:
                save_checkpoint(step + 1, final=False)
                next_checkpoint += args.checkpoint_frequency * (
                    (step + 1 - next_checkpoint) // args.checkpoint_frequency + 1
                )
            bar.update(1, labels=stats.total_labels, eval=last_eval)
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
            log.info("checkpoint saved to %s", save_checkpoint(step + 1 if completed else step, final=True))
        tracker.scalars({**stats.as_scalars(), **feedback_report(teacher, stats, completed)}, step + 1)
        tracker.close()
        teacher.close()
        if query_clips:
            query_clips.close()
        if server:
            server.stop()
        env.close()
        eval_env.close()
    if interrupted:
        raise KeyboardInterrupt
    final_metrics.update({**stats.as_scalars(), "step": float(step + 1), "run_dir": str(run_dir)})
    return final_metrics


def restore_training_state(bundle, agent, ensemble, reward_optimizer, rb, prefs, stats, np_rngs, env) -> None:
    """Load a resume bundle into freshly built components (the loop's counters are restored in ``main``)."""
    st = bundle["state"]
    agent.load_state_dict(st["agent"])
    agent.q_optimizer.load_state_dict(st["q_optimizer"])
    agent.actor_optimizer.load_state_dict(st["actor_optimizer"])
    if agent.a_optimizer:
        agent.a_optimizer.load_state_dict(st["alpha_optimizer"])
    ensemble.load_state_dict(st["reward_ensemble"])
    reward_optimizer.load_state_dict(st["reward_optimizer"])
    rb.load_state_dict(bundle["replay_buffer"])
    prefs.load_state_dict(st["preferences"])
    vars(stats).update(st["feedback_stats"])
    restore_rng_state(st["rng"], np_rngs)
    restore_env_rng_state(env, st["env_rng"])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(Args, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
