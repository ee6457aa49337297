"""Labelling-clip cost per task: rendering a 64-step segment from stored physics states and encoding it, with the
suites' own visual settings against the lighter ones the labelling clips use (``rlhf.video.CLIP_VISUALS``).

    uv run python benchmarks/clip_render.py                      # Hopper, Walker2d, Ant, HalfCheetah, walker-walk
    uv run python benchmarks/clip_render.py --env-id Hopper-v5 --repeats 5

Both settings are measured side by side in one process, alternating, so machine load affects them alike. A
segment is 64 steps of random actions; timings are per clip (render + VP9 WebM encode, as the page gets them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from rlhf.envs import get_physics_state, make_env  # noqa: E402
from rlhf.video import SegmentRenderer, encode_video  # noqa: E402

TASKS = ["Hopper-v5", "Walker2d-v5", "Ant-v5", "HalfCheetah-v5", "dm_control/walker-walk-v0"]


def segment(env_id: str, steps: int = 64) -> np.ndarray:
    env = make_env(env_id, seed=0)
    env.reset(seed=0)
    states = []
    for _ in range(steps):
        states.append(get_physics_state(env))
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.close()
    return np.stack(states)


def time_clip(renderer: SegmentRenderer, states: np.ndarray) -> tuple[float, float]:
    mask = np.ones(len(states), bool)
    t0 = time.perf_counter()
    frames = renderer.frames(states, mask)
    t1 = time.perf_counter()
    encode_video(frames, renderer.fps, "webm")
    return t1 - t0, time.perf_counter() - t1


def measure(env_id: str, light: bool, size: int, clips: int = 3) -> dict[str, float]:
    """Median render and encode seconds per 64-step clip, in this process (one renderer, as the trainer has)."""
    states = segment(env_id)
    renderer = SegmentRenderer(env_id, size, size, light=light)
    time_clip(renderer, states[:4])  # warm-up: the first render creates the OpenGL context
    times = [time_clip(renderer, states) for _ in range(clips)]
    renderer.close()
    return {"render": statistics.median(t[0] for t in times), "encode": statistics.median(t[1] for t in times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", action="append", help=f"tasks (default: {', '.join(TASKS)})")
    p.add_argument("--size", type=int, default=240, help="clip width and height (the page's default 240)")
    p.add_argument("--repeats", type=int, default=3, help="processes per task and setting, alternating")
    p.add_argument("--worker", nargs=2, metavar=("ENV_ID", "LIGHT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(measure(a.worker[0], a.worker[1] == "1", a.size)))
        return
    print("| task | suite's settings: s per clip (render + encode) | labelling settings | ratio | ms per frame |")
    print("|---|---:|---:|---:|---:|")
    for env_id in a.env_id or TASKS:
        # one process per measurement: two offscreen contexts in one process were measured to slow each other
        runs: dict[str, list[dict[str, float]]] = {"0": [], "1": []}
        for _ in range(a.repeats):
            for light in runs:
                cmd = [sys.executable, __file__, "--worker", env_id, light, "--size", str(a.size)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                runs[light].append(json.loads(out.strip().splitlines()[-1]))
        med = {
            k: {part: statistics.median(r[part] for r in v) for part in ("render", "encode")} for k, v in runs.items()
        }
        total = {k: v["render"] + v["encode"] for k, v in med.items()}
        print(
            f"| `{env_id}` | {total['0']:.2f} ({med['0']['render']:.2f} + {med['0']['encode']:.2f}) "
            f"| {total['1']:.2f} ({med['1']['render']:.2f} + {med['1']['encode']:.2f}) "
            f"| {total['1'] / total['0']:.2f} | {med['1']['render'] / 64 * 1000:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
