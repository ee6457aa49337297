"""Human-feedback latency on this machine: clip render time per segment and the trainer's idle time per session.

A scripted labeller answers every query through the page's HTTP routes as soon as it can claim it (optionally
after a think time, to mimic a person), while sac_rlhf.py runs with --teacher-feedback-mode human against a
separately started server. The trainer logs feedback/clip_render_seconds (mean per segment, rendered on its
background thread) and feedback/wait_seconds (time training stood still in each session).

    uv run python benchmarks/human_feedback.py --think-seconds 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from rlhf.feedback_server_process import start_feedback_server

ROOT = Path(__file__).resolve().parents[1]


def labeller(url: str, stop: threading.Event, think: float) -> None:
    http = requests.Session()
    while not stop.is_set():
        try:
            query = http.post(f"{url}/api/claim", json={"labeller": "bench"}, timeout=10).json()["query"]
            if query is None:
                http.get(f"{url}/api/wait", params={"wait": 1}, timeout=10)
                continue
            time.sleep(think)
            http.post(
                f"{url}/api/answer",
                json={"labeller": "bench", "run_id": query["run_id"], "query_id": query["query_id"], "choice": "A"},
                timeout=10,
            )
        except requests.ConnectionError:
            time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="Hopper-v5")
    p.add_argument("--think-seconds", type=float, default=0.0)
    p.add_argument("--clip-size", type=int, default=240)
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--queries-per-session", type=int, default=10)
    a = p.parse_args()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as tmp:
        server = start_feedback_server(port=0, data_dir=Path(tmp) / "server")
        stop = threading.Event()
        threading.Thread(target=labeller, args=(server.url, stop, a.think_seconds), daemon=True).start()
        try:
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "framework" / "sac_rlhf.py"),
                    "--env-id",
                    a.env_id,
                    "--total-timesteps",
                    "4000",
                    "--total-explore-steps",
                    "1000",
                    "--learning-starts",
                    "1000",
                    "--teacher-feedback-total-queries",
                    str(a.queries),
                    "--teacher-feedback-num-queries-per-session",
                    str(a.queries_per_session),
                    "--feedback-clip-size",
                    str(a.clip_size),
                    "--evaluation-frequency",
                    "100000",
                    "--evaluation-episodes",
                    "1",
                    "--runs-dir",
                    str(Path(tmp) / "runs"),
                    "--no-progress-bar",
                    "--log-level",
                    "WARNING",
                    "--teacher-feedback-mode",
                    "human",
                    "--feedback-server-url",
                    server.url,
                ],
                check=True,
            )
        finally:
            stop.set()
            server.stop()
        (run_dir,) = (Path(tmp) / "runs").iterdir()
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        render = [e.value for e in acc.Scalars("feedback/clip_render_seconds")]
        wait = [e.value for e in acc.Scalars("feedback/wait_seconds")]
    print(
        f"{a.env_id}, segments of 64 steps, {a.clip_size}x{a.clip_size} WebM clips, {a.queries_per_session} "
        f"queries per session, labeller think time {a.think_seconds} s per query:"
    )
    print(f"  clip render + encode per segment (running mean at each session): {[round(x, 2) for x in render]} s")
    print(
        f"  trainer idle per session: {[round(x, 1) for x in wait]} s "
        f"(labelling alone takes {a.queries_per_session * a.think_seconds:.0f} s)"
    )


if __name__ == "__main__":
    main()
