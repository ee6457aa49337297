"""Evaluate a saved policy on the true environment return.

Loads a checkpoint written by sac_rlhf.py, sac.py, pref_ppo.py or ppo.py, runs ``--episodes`` episodes of its
deterministic policy (the mean action), prints mean, std, 95 % confidence interval of the mean, min, max and
median of the returns, and writes to ``--output-dir`` (default ``<run>/evaluation/``):

  summary.json             the statistics, per-episode returns and lengths, and what was evaluated
  returns.png              per-episode returns with their mean and 95 % CI
  episode_{i:03d}.mp4      H.264 videos of the first ``--video-episodes`` episodes (with --capture-video)
  episode_{i:03d}.gif      with ``--gif-seconds S``: the first S seconds of each filmed episode as a looping GIF
                           at up to 15 frames a second (for a README: a GIF plays inline where a video does not)

A policy taught a behaviour by a criterion of its own (``--teacher-sim-reward module:function``) is also scored
by that criterion: each episode's sum of the function's per-step rewards (rlhf.custom_reward), printed and in
summary.json beside the true return (``--criterion`` names another function, ``--criterion none`` skips it).

Episode i is reset with seed ``--seed + i`` (as the training scripts' evaluations do), so two evaluations with the
same seed see the same initial states. Runs headless with no set-up (rlhf.envs chooses the OpenGL backend).

    uv run python framework/evaluation.py --path-to-model runs/Hopper-v5__sac_rlhf__1__1700000000
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlhf.checkpoint import CheckpointError, load_state
from rlhf.config import ConfigError
from rlhf.evaluate import summary
from rlhf.rendering import configure_headless_rendering

SAC_ALGORITHMS = ("sac_rlhf", "sac")
PPO_ALGORITHMS = ("pref_ppo", "ppo")
MAX_VIDEO_FPS = 30.0
MAX_GIF_FPS = 15.0  # half the video's rate: a GIF's size grows with its frames, and 15 fps still reads as motion
DESCRIPTION = (
    "Evaluate a saved policy (a checkpoint of sac_rlhf.py, sac.py, pref_ppo.py or ppo.py) on the true environment "
    "return with its deterministic action: prints mean, std, 95 % CI of the mean, min, max and median, and writes "
    "episode_NNN.mp4 videos, returns.png and summary.json to --output-dir (default <run>/evaluation/)."
)


@dataclass
class Args:
    path_to_model: str
    """a checkpoint (``<run>/checkpoints/final``, with or without its .json/.safetensors suffix) or a run
    directory (its ``checkpoints/final``)"""
    env_id: str | None = None
    """environment to evaluate in (default: the checkpoint's own)"""
    episodes: int = 10
    """number of evaluation episodes"""
    seed: int = 1
    """episode i is reset with seed + i"""
    capture_video: bool = True
    """write an mp4 video of each evaluated episode (of the first --video-episodes with that flag)"""
    video_episodes: int = 0
    """how many episodes to film with --capture-video (0: all of them)"""
    video_size: int = 480
    """width and height of the videos in pixels"""
    output_dir: str = ""
    """where to write videos, plot and summary (default: <run>/evaluation/)"""
    gif_seconds: float = 0.0
    """also write the first this many seconds of each filmed episode as a looping GIF (0: no GIFs)"""
    criterion: str | None = None
    """also score each episode by this behaviour criterion (module:function or file.py:function, as
    --teacher-sim-reward; default: the run's own --teacher-sim-reward, if it had one; none: do not)"""


class EvaluationError(RuntimeError):
    """Bad input (a path, a flag, a checkpoint that does not fit the environment); the CLI exits with status 2."""


# ---- loading ----------------------------------------------------------------------------------------------------


def resolve_checkpoint(path_to_model: str) -> tuple[Path, Path]:
    """(checkpoint path without suffix, run directory) for a checkpoint path or a run directory. A run directory
    means its ``checkpoints/final``; one without it (a run still going, or killed) its newest periodic checkpoint,
    ``checkpoints/resume/state``."""
    path = Path(path_to_model).expanduser().resolve()
    if path.is_dir() and not (path / "state.json").is_file():  # a run directory (not a resume bundle)
        for candidate in (path / "checkpoints" / "final", path / "checkpoints" / "resume" / "state"):
            if candidate.with_suffix(".json").is_file():
                return candidate, path
        raise EvaluationError(f"--path-to-model {path_to_model}: a directory with no checkpoints/final.json")
    if path.is_dir():  # a resume bundle
        path = path / "state"
    elif path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    if not path.with_suffix(".json").exists():
        raise EvaluationError(f"--path-to-model {path_to_model}: no checkpoint {path.with_suffix('.json')}")
    # <run>/checkpoints/final, <run>/exploration/agent, <run>/checkpoints/resume/state; elsewhere, the file's folder
    folder = path.parent.parent if path.parent.name == "resume" else path.parent
    return path, folder.parent if folder.name in ("checkpoints", "exploration") else folder


def load_checkpoint(ckpt: Path, run_dir: Path) -> dict:
    """The checkpoint's state with "algorithm", "env_id", "step" and "args" filled in.

    Exploration checkpoints (``<run>/exploration/agent``) hold only the agent and the step: the rest comes from the
    run's ``args.json``.
    """
    state = load_state(ckpt)
    if not isinstance(state, dict) or not isinstance(state.get("agent"), dict):
        raise CheckpointError(f"checkpoint {ckpt} holds no agent")
    if "args" not in state and (run_dir / "args.json").is_file():
        try:
            state["args"] = json.loads((run_dir / "args.json").read_text())
        except ValueError as e:
            raise EvaluationError(f"{run_dir / 'args.json'} is not valid JSON: {e}") from e
    state.setdefault("args", {})
    state.setdefault("env_id", state["args"].get("env_id"))
    state.setdefault("step", None)
    if "algorithm" not in state:
        state["algorithm"] = "sac" if any(k.startswith("actor.trunk.") for k in state["agent"]) else None
    return state


def make_policy(state: dict, obs_dim: int, act_dim: int, low: np.ndarray, high: np.ndarray):
    """The deterministic policy of the checkpoint's agent: observation (o,) -> action (a,)."""
    import torch

    algorithm, weights = state["algorithm"], state["agent"]
    if algorithm in SAC_ALGORITHMS:
        from rlhf.agent import Actor

        # Only the actor acts (building the whole SAC would also build its optimizers). The architecture is read
        # off the weights, so checkpoints of any --actor-and-q-net-hidden-dim/-layers load.
        trunk = sorted(k for k in weights if k.startswith("actor.trunk.") and k.endswith(".weight"))
        if not trunk:
            raise CheckpointError(f"the checkpoint's agent has no actor weights (algorithm {algorithm})")
        hidden_dim, expected_obs = (int(n) for n in weights[trunk[0]].shape)
        agent = Actor(obs_dim, act_dim, low, high, hidden_dim, len(trunk))
        weights = {k.removeprefix("actor."): v for k, v in weights.items() if k.startswith("actor.")}
        act = lambda obs: agent.get_action(obs)[2]  # noqa: E731  (the tanh-squashed mean action)
    elif algorithm in PPO_ALGORITHMS:
        from rlhf.ppo_agent import PPOAgent

        if "actor_mean.0.weight" not in weights:
            raise CheckpointError(f"the checkpoint's agent has no actor weights (algorithm {algorithm})")
        hidden = int(weights["actor_mean.0.weight"].shape[0])
        agent = PPOAgent(obs_dim, act_dim, low, high, hidden_dim=hidden)
        expected_obs = int(weights["actor_mean.0.weight"].shape[1])
        act = lambda obs: agent.actor_mean(agent.obs_norm(obs))  # noqa: E731  (normalised with the stored stats)
    else:
        raise EvaluationError(
            f"unknown algorithm {algorithm!r} in the checkpoint (expected one of "
            f"{', '.join(SAC_ALGORITHMS + PPO_ALGORITHMS)})"
        )
    if expected_obs != obs_dim:
        raise EvaluationError(
            f"the model expects observations of size {expected_obs}, the environment gives "
            f"{obs_dim}: evaluate it in the environment it was trained in (--env-id)"
        )
    try:
        agent.load_state_dict(weights)  # PPO: includes the observation-normalisation statistics it was trained with
    except RuntimeError as e:
        raise CheckpointError(
            f"the checkpoint's agent does not fit a {algorithm} agent for this environment: {str(e).splitlines()[0]}"
        ) from e
    agent.eval()

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            action = act(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
        return np.clip(action, low, high)

    return policy


# ---- episodes and outputs ---------------------------------------------------------------------------------------


class VideoWriter:
    """Streams frames into an H.264 mp4 (yuv420p, faststart, so browsers play it) written atomically; with
    ``gif_seconds`` also the start of the episode as a looping GIF beside it."""

    def __init__(self, path: Path, fps: float, gif_seconds: float = 0.0):
        import imageio.v2 as imageio

        self.gif_every = max(1, math.ceil(fps / MAX_GIF_FPS))
        self.gif_fps, self.gif_max = fps / self.gif_every, int(round(gif_seconds * fps))
        self.frames, self.gif_frames = 0, []
        self.path, self.tmp = path, path.with_name(path.name + ".part.mp4")
        self.writer = imageio.get_writer(
            self.tmp,
            fps=fps,
            codec="libx264",
            macro_block_size=1,
            pixelformat="yuv420p",
            output_params=["-preset", "veryfast", "-movflags", "+faststart"],
            ffmpeg_log_level="error",
        )

    def add(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        self.writer.append_data(np.ascontiguousarray(frame[: h - h % 2, : w - w % 2]))  # yuv420p: even sides
        if self.frames < self.gif_max and self.frames % self.gif_every == 0:
            self.gif_frames.append(frame.copy())
        self.frames += 1

    @property
    def gif_path(self) -> Path:
        return self.path.with_suffix(".gif")

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)
        if self.gif_frames:
            from PIL import Image

            images = [Image.fromarray(f) for f in self.gif_frames]
            tmp = self.gif_path.with_name(self.gif_path.name + ".part.gif")
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=round(1000 / self.gif_fps),
                           loop=0, optimize=True)  # fmt: skip
            os.replace(tmp, self.gif_path)


def video_rate(env) -> tuple[int, float]:
    """(film every k-th step, video fps): real-time playback at no more than MAX_VIDEO_FPS frames per second
    (Hopper acts at 125 Hz; rendering every step would cost 4× the time for frames nobody sees)."""
    dt = getattr(env.unwrapped, "dt", None)
    step_rate = 1.0 / dt if dt else float(env.metadata.get("render_fps") or MAX_VIDEO_FPS)
    every = max(1, math.ceil(step_rate / MAX_VIDEO_FPS))
    return every, step_rate / every


def run_episode(env, policy, seed: int, video: VideoWriter | None, every: int, criterion=None):
    """(true return, length, criterion return or None) of one episode of the deterministic policy."""
    from rlhf.camera import AgentCamera
    from rlhf.custom_reward import EpisodeSteps
    from rlhf.envs import get_physics_state

    obs, _ = env.reset(seed=seed)
    episode_return, length, done = 0.0, 0, False
    steps = EpisodeSteps() if criterion is not None else None
    camera = AgentCamera.of(env)  # framed at the first episode's reset state, then kept over the agent
    while not done:
        if video is not None and length % every == 0:
            video.add(camera.render())
        action = policy(obs)
        physics = get_physics_state(env) if steps is not None else None
        next_obs, reward, terminated, truncated, _ = env.step(action)
        if steps is not None:
            steps.add(obs, action, next_obs, physics)
        obs = next_obs
        episode_return += float(reward)
        length += 1
        done = terminated or truncated
    if video is not None:
        video.add(camera.render())  # the final state
        video.close()
    return episode_return, length, None if steps is None else float(criterion(steps.segment()).sum())


def plot_returns(path: Path, returns: np.ndarray, stats: dict[str, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes = np.arange(len(returns))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.axhspan(stats["ci95_low"], stats["ci95_high"], color="tab:blue", alpha=0.15, label="95 % CI of the mean")
    ax.axhline(stats["mean"], color="tab:blue", label=f"mean {stats['mean']:.1f}")
    ax.plot(episodes, returns, "o", color="tab:orange", label="episode return")
    ax.set_xlabel("episode")
    ax.set_ylabel("true return")
    ax.set_xticks(episodes if len(episodes) <= 20 else np.linspace(0, len(returns) - 1, 11).round())
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_summary(stats: dict[str, float], n: int) -> str:
    return (
        f"episodes {n}: mean {stats['mean']:.2f} ± std {stats['std']:.2f}  "
        f"95% CI [{stats['ci95_low']:.2f}, {stats['ci95_high']:.2f}]  "
        f"min {stats['min']:.2f}  max {stats['max']:.2f}  median {stats['median']:.2f}"
    )


def check_args(args: Args) -> None:
    if args.episodes <= 0:
        raise EvaluationError(f"--episodes must be positive, got {args.episodes}")
    if args.video_episodes < 0:
        raise EvaluationError(f"--video-episodes must be >= 0, got {args.video_episodes}")
    if not (math.isfinite(args.gif_seconds) and args.gif_seconds >= 0):
        raise EvaluationError(f"--gif-seconds must be >= 0, got {args.gif_seconds}")
    if args.gif_seconds > 0 and not args.capture_video:
        raise EvaluationError("--gif-seconds films the episodes: it needs --capture-video")


def load_criterion(spec: str | None, env_id: str):
    """The behaviour criterion to score episodes by (rlhf.custom_reward.CustomReward), or None."""
    if not spec or spec == "none":
        return None
    from rlhf.custom_reward import CustomReward

    try:
        return CustomReward(spec, env_id)
    except (ValueError, ConfigError) as e:
        raise EvaluationError(str(e).replace("--teacher-sim-reward", "criterion", 1)) from e


def main(args: Args) -> dict:
    configure_headless_rendering()
    from rlhf.envs import env_info, make_env

    check_args(args)
    ckpt, run_dir = resolve_checkpoint(args.path_to_model)
    state = load_checkpoint(ckpt, run_dir)
    env_id = args.env_id or state["env_id"]
    if not env_id:
        raise EvaluationError(f"checkpoint {ckpt} does not name its environment: pass --env-id")
    try:
        env = make_env(
            env_id,
            seed=args.seed,
            render_mode="rgb_array" if args.capture_video else None,
            width=args.video_size,
            height=args.video_size,
        )
    except ValueError as e:
        raise EvaluationError(str(e)) from e
    info = env_info(env)
    policy = make_policy(state, info.obs_dim, info.act_dim, info.action_low, info.action_high)
    spec = state["args"].get("teacher_sim_reward") if args.criterion is None else args.criterion
    criterion = load_criterion(spec, env_id)

    out = Path(args.output_dir).expanduser().resolve() if args.output_dir else run_dir / "evaluation"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a path under a regular file: one line, not a traceback (issue 9, item 4)
        raise EvaluationError(f"--output-dir {out}: cannot create it: {e.strerror or e}") from e
    filmed = args.episodes if args.video_episodes == 0 else min(args.video_episodes, args.episodes)
    every, fps = video_rate(env)
    print(
        f"evaluating {state['algorithm']} checkpoint {ckpt} (step {state['step']}) on {env_id}, "
        f"{args.episodes} episodes, seed {args.seed}",
        flush=True,
    )

    returns, lengths, videos = np.zeros(args.episodes), np.zeros(args.episodes, np.int64), []
    scores = np.zeros(args.episodes)
    start = time.time()
    try:
        for i in range(args.episodes):
            video = None
            if args.capture_video and i < filmed:
                videos.append(out / f"episode_{i:03d}.mp4")
                video = VideoWriter(videos[-1], fps, args.gif_seconds)
            returns[i], lengths[i], score = run_episode(env, policy, args.seed + i, video, every, criterion)
            scored = "" if score is None else f", criterion {score:.2f}"
            if score is not None:
                scores[i] = score
            print(f"episode {i}: return {returns[i]:.2f}, length {lengths[i]}{scored}", flush=True)
    except ConfigError as e:  # the criterion failed or returned a bad result mid-evaluation
        raise EvaluationError(str(e)) from e
    finally:
        env.close()
        if criterion is not None:
            criterion.close()

    stats = summary(returns)
    title = f"{state['algorithm']} on {env_id}, step {state['step']}: {args.episodes} episodes"
    plot_returns(out / "returns.png", returns, stats, title)
    result = {
        "checkpoint": str(ckpt),
        "algorithm": state["algorithm"],
        "env_id": env_id,
        "step": state["step"],
        "episodes": args.episodes,
        "seed": args.seed,
        **stats,
        "returns": returns.tolist(),
        "lengths": lengths.tolist(),
        **(
            {"criterion": spec, "criterion_returns": scores.tolist(), "criterion_summary": summary(scores)}
            if criterion is not None
            else {}
        ),
        "videos": [v.name for v in videos],
        "gifs": [v.with_suffix(".gif").name for v in videos] if args.gif_seconds > 0 else [],
        "plot": "returns.png",
        "seconds": round(time.time() - start, 2),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    print(format_summary(stats, args.episodes))
    if criterion is not None:
        print(f"criterion {spec}: " + format_summary(result["criterion_summary"], args.episodes))
    gifs = f" and {len(result['gifs'])} GIF(s)" if result["gifs"] else ""
    print(f"wrote {out / 'summary.json'}, {out / 'returns.png'}, {len(videos)} video(s){gifs} to {out}")
    return {**result, "output_dir": str(out)}


def cli(argv: list[str] | None = None) -> int:
    import tyro

    args = tyro.cli(Args, args=argv, description=DESCRIPTION)
    try:
        main(args)
    except (CheckpointError, EvaluationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
