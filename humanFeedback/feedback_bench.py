"""Latencies of the labelling server over a real socket (not a test; prints numbers).

    uv run python humanFeedback/feedback_bench.py [--queries 200]

Starts the CLI on a free port with a temporary data dir, then times: uploading a query with two clips, claiming,
answering (one fsynced SQLite commit each), and how long after an answer a trainer blocked in a long-poll sees it.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from rlhf.server_ready import ServerNotReady, wait_for_ready_file

HERE = Path(__file__).resolve().parent


def pct(xs: list[float]) -> str:
    xs = sorted(xs)
    return (
        f"median {statistics.median(xs) * 1e3:6.2f} ms  p95 {xs[int(0.95 * (len(xs) - 1))] * 1e3:6.2f} ms  "
        f"max {xs[-1] * 1e3:6.2f} ms  (n={len(xs)})"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=200, help="queries to upload, claim and answer (1-100000)")
    ap.add_argument("--clip-kb", type=int, default=60, help="size of each fake clip, 1-16384 (a WebM header + padding)")
    args = ap.parse_args()
    if not 1 <= args.queries <= 100_000 or not 1 <= args.clip_kb <= 16_384:  # the server takes 64 MB per upload
        ap.error("--queries must be in [1, 100000] and --clip-kb in [1, 16384]")
    with tempfile.TemporaryDirectory() as data:
        ready_file = Path(data) / "ready.json"
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "feedback_server.py"), "--port", "0", "--data-dir", data]
            + ["--ready-file", str(ready_file)],
            stdout=subprocess.DEVNULL,  # its "Open ..." line is for people; errors still reach stderr
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        try:
            try:
                url = wait_for_ready_file(ready_file, proc, timeout=60).local_url("127.0.0.1")
            except ServerNotReady as e:
                print(f"{ap.prog}: error: {e}", file=sys.stderr)
                return 1
            s = requests.Session()
            s.post(f"{url}/api/runs", json={"run_id": "bench", "instruction": "x", "env_id": "Hopper-v5"})
            up, claim, answer, notify = [], [], [], []
            for i in range(args.queries):
                a = b"\x1a\x45\xdf\xa3" + os.urandom(args.clip_kb * 1024)
                b = b"\x1a\x45\xdf\xa3" + os.urandom(args.clip_kb * 1024)
                t = time.perf_counter()
                r = s.post(
                    f"{url}/api/runs/bench/queries",
                    data={"query_id": f"q{i}", "session": "1"},
                    files={"clip_a": ("a.webm", a, "video/webm"), "clip_b": ("b.webm", b, "video/webm")},
                )
                up.append(time.perf_counter() - t)
                assert r.status_code == 201, r.text
            trainer = requests.Session()
            last = 0
            for _ in range(args.queries):
                t = time.perf_counter()
                q = s.post(f"{url}/api/claim", json={"labeller": "bench"}).json()["query"]
                claim.append(time.perf_counter() - t)
                seen: list[float] = []

                def poll(after: int = last, out: list[float] = seen) -> None:
                    r = trainer.get(f"{url}/api/runs/bench/events", params={"after": after, "wait": 10})
                    out.append(time.perf_counter())
                    assert r.json()["events"], r.text

                th = threading.Thread(target=poll)
                th.start()
                time.sleep(0.005)  # let the long-poll reach the server
                t = time.perf_counter()
                r = s.post(
                    f"{url}/api/answer",
                    json={"labeller": "bench", "run_id": "bench", "query_id": q["query_id"], "choice": "A"},
                )
                answer.append(time.perf_counter() - t)
                th.join()
                notify.append(seen[0] - t)
                last = r.json()["event"]["seq"]
            print(f"upload query (2 x {args.clip_kb} KiB): {pct(up)}")
            print(f"claim:                        {pct(claim)}")
            print(f"answer (fsynced commit):      {pct(answer)}")
            print(f"answer -> long-poll returns:  {pct(notify)}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
