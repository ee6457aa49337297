"""Synthetic demo runs in the run-directory layout, to try the toolbox without training (and for its tests).

    uv run python toolbox/toolbox_demo.py --out /tmp/demo-runs
    uv run python toolbox/toolbox.py --runs-dir /tmp/demo-runs

The curves are made up (a noisy saturating return), the videos are a moving square (or, with --render, frames of
the real environment under random actions); nothing here is a training result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

Frames = Callable[[int, int], np.ndarray]  # (seed, count) -> (count, h, w, 3) uint8


def square_frames(seed: int, count: int, size: int = 48) -> np.ndarray:
    """A coloured square crossing a grey background: distinct per seed, cheap to encode."""
    rng = np.random.default_rng(seed)
    color = rng.integers(40, 230, 3)
    frames = np.full((count, size, size, 3), 200, np.uint8)
    for t in range(count):
        x = int((t * (2 + seed % 3)) % (size - 12))
        frames[t, 18:30, x : x + 12] = color
    return frames


def hopper_frames(env_id: str = "Hopper-v5", size: int = 160) -> Frames:
    """Frames of ``env_id`` under random actions (reset after a termination)."""
    from rlhf.envs import make_env

    env = make_env(env_id, seed=0, render_mode="rgb_array", width=size, height=size)

    def frames(seed: int, count: int) -> np.ndarray:
        env.reset(seed=seed)
        out = []
        for _ in range(count):
            out.append(env.render().copy())
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        return np.stack(out)

    return frames


def _curve(rng, steps: np.ndarray, top: float, rate: float) -> np.ndarray:
    return top * (1 - np.exp(-steps / rate)) + rng.normal(0, top * 0.04, len(steps))


def make_run(
    root: Path,
    name: str,
    algorithm: str,
    seed: int,
    total: int,
    frames: Frames,
    labels_per_session: int,
    sessions: int,
    top: float,
    eval_videos: int = 3,
    with_checkpoint: bool = True,
) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    from rlhf.checkpoint import save_state
    from rlhf.manifest import write_manifest
    from rlhf.video import encode_video

    rng = np.random.default_rng(seed)
    run = root / name
    run.mkdir(parents=True)
    env_id, exp_name = name.split("__")[:2]
    args = {"env_id": env_id, "exp_name": exp_name, "seed": seed, "total_timesteps": total}
    if labels_per_session:
        args |= {"teacher_feedback_mode": "simulated", "teacher_feedback_num_queries_per_session": labels_per_session}
    (run / "args.json").write_text(json.dumps(args, indent=2))

    writer = SummaryWriter(str(run))
    steps = np.linspace(total / 20, total, 20).astype(int)
    for step, value in zip(steps, _curve(rng, steps, top, total / 3), strict=True):
        writer.add_scalar("charts/episodic_return", float(value), int(step))
        writer.add_scalar("charts/SPS", 120.0 + rng.normal(0, 5), int(step))
    session_steps = np.linspace(total / 10, total * 0.8, sessions).astype(int) if labels_per_session else []
    for i, step in enumerate(session_steps):
        writer.add_scalar("feedback/total_labels", labels_per_session * (i + 1), int(step))
        writer.add_scalar("reward_model/val_accuracy", min(1.0, 0.6 + 0.1 * i + rng.normal(0, 0.02)), int(step))
    eval_steps = np.linspace(total / eval_videos, total, eval_videos).astype(int) if eval_videos else []
    for step, value in zip(eval_steps, _curve(rng, np.asarray(eval_steps), top * 1.1, total / 3), strict=True):
        writer.add_scalar("eval/mean_return", float(value), int(step))
        writer.add_scalar("eval/std_return", abs(float(value)) * 0.1, int(step))
    writer.close()

    for i, step in enumerate(eval_steps):
        path = run / "videos" / "eval" / f"step_{step:08d}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_video(frames(seed * 100 + i, 24), 12, "mp4", path)

    if labels_per_session:
        queries = run / "videos" / "queries"
        lines = []
        for s, step in enumerate(session_steps):
            for q in range(labels_per_session):
                # Named as the trainer names them (rlhf.video.QueryClipRecorder): H.264 mp4.
                clips = [f"session_{s:04d}/q{q:03d}_{side}.mp4" for side in "ab"]
                for k, clip in enumerate(clips):
                    (queries / clip).parent.mkdir(parents=True, exist_ok=True)
                    encode_video(frames(seed * 1000 + s * 10 + q * 2 + k, 16), 12, "mp4", queries / clip)
                label = [0.0, 1.0, 0.5, None][(s + q) % 4]
                lines.append(
                    json.dumps(
                        {
                            "session": s,
                            "query": q,
                            "step": int(step),
                            "clip_a": clips[0],
                            "clip_b": clips[1],
                            "label": label,
                        }
                    )
                )
        (queries / "index.jsonl").write_text("\n".join(lines) + "\n")

    if with_checkpoint:
        save_state(
            run / "checkpoints" / "final",
            {"algorithm": algorithm, "env_id": env_id, "step": total, "agent": {}, "args": args},
        )
    # what every script writes (rlhf.run.Run): the toolbox reads the algorithm and status from it
    write_manifest(run, algorithm=algorithm, env_id=env_id, seed=seed, exp_name=exp_name, status="finished",
                   step=total, total_timesteps=total)  # fmt: skip
    return run


def make_demo_runs(root: Path, frames: Frames = square_frames, queries_per_session: int = 2) -> list[Path]:
    """Three runs: PEBBLE with two seeds (labels, queried clips, evaluation videos) and the SAC oracle baseline."""
    root.mkdir(parents=True, exist_ok=True)
    return [
        make_run(
            root, "Hopper-v5__sac_rlhf__1__1760000000", "sac_rlhf", 1, 100_000, frames, queries_per_session, 3, 2400.0
        ),
        make_run(
            root, "Hopper-v5__sac_rlhf__2__1760000500", "sac_rlhf", 2, 100_000, frames, queries_per_session, 3, 1900.0
        ),
        make_run(root, "Hopper-v5__sac__1__1760001000", "sac", 1, 100_000, frames, 0, 0, 3000.0, eval_videos=2),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory to create the demo runs in")
    parser.add_argument("--render", action="store_true", help="film Hopper-v5 under random actions (slower)")
    args = parser.parse_args(argv)
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError:
        print(f"{parser.prog}: error: --out {args.out}: cannot create it (a part of its path is a file, or not "
              "writable)", file=sys.stderr)  # fmt: skip
        return 2
    frames = hopper_frames() if args.render else square_frames
    try:
        made = make_demo_runs(Path(args.out), frames, queries_per_session=4 if args.render else 2)
    except FileExistsError as e:
        print(f"{parser.prog}: error: --out {args.out} already holds {Path(e.filename).name}", file=sys.stderr)
        return 2
    for run in made:
        print(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
