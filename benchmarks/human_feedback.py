"""Human-feedback latency on this machine: clip render time per segment, the trainer's idle time per session, and
what a labeller sees in the page.

A scripted labeller answers every query while sac_rlhf.py runs with --teacher-feedback-mode human against a
separately started server. The trainer logs feedback/clip_render_seconds (mean per segment, rendered on its
background thread) and feedback/wait_seconds (time training stood still in each session).

``--labeller http`` answers through the page's HTTP routes as soon as it can claim a pair (after a think time);
``--labeller browser`` is a person in Debian's Chromium (Playwright): it watches each pair for ``--think-seconds``
and presses ←, and the page is timed (issue 12, item 2): answer -> next pair playing (median, p95; a wait for the
trainer included), session start (the trainer writes the session's segments, pending_queries/session_*.npz) ->
first pair shown, and the waiting states the page showed inside a session.
``--tree DIR`` runs the trainer, server and page of another checkout (e.g. ``git archive main | tar -x -C DIR``)
with this script, for a before/after comparison on one machine.

    uv run python benchmarks/human_feedback.py --think-seconds 2
    uv run python benchmarks/human_feedback.py --labeller browser --think-seconds 2 [--tree /tmp/before]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from rlhf.feedback_server_process import start_feedback_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"]

# In the page: every change of what it shows ([epoch ms, waiting shown, "run … · session S · query Q"]) and, for
# every answer key, the milliseconds until the next pair plays (both clips advancing).
PAGE_PROBE = """
document.addEventListener("DOMContentLoaded", () => {
  window.views = [];
  window.latencies = [];
  const $ = (id) => document.getElementById(id);
  const note = () => window.views.push([Date.now(), !$("waiting").hidden, $("run-info").textContent]);
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                     attributes: true, attributeFilter: ["hidden"]});
  document.addEventListener("keydown", (ev) => {
    if (!ev.key.startsWith("Arrow") || $("compare").hidden) return;
    const t0 = performance.now(), before = $("run-info").textContent;
    const tick = () => {
      const playing = ["clip-a", "clip-b"].every((id) => { const v = $(id); return !v.paused && v.currentTime > 0; });
      if (!$("compare").hidden && $("run-info").textContent !== before && playing) {
        window.latencies.push(performance.now() - t0);
      } else if (performance.now() - t0 < 600000) setTimeout(tick, 5);
    };
    setTimeout(tick, 0);
  }, true);
});
"""


def browser_labeller(page_url: str, stop: threading.Event, think: float, out: dict) -> None:
    """A person at the page: watches each new pair for ``think`` s, then presses ←. Fills ``out`` at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.add_init_script(PAGE_PROBE)
        page.goto(page_url)
        last = None
        while not stop.is_set():
            shown = page.evaluate("() => document.getElementById('compare').hidden ? null : "
                                  "document.getElementById('run-info').textContent")  # fmt: skip
            if shown is None or shown == last:
                page.wait_for_timeout(20)
                continue
            page.wait_for_timeout(think * 1000)
            last = shown
            page.keyboard.press("ArrowLeft")
        out["views"] = page.evaluate("() => window.views")
        out["latencies"] = page.evaluate("() => window.latencies")
        browser.close()


def watch_sessions(runs_dir: Path, stop: threading.Event, started: dict[int, float]) -> None:
    """The time (epoch ms) each session's segments file appears: the trainer writes it when it asks the session."""
    while not stop.is_set():
        for f in runs_dir.glob("*/pending_queries/session_*.npz"):
            started.setdefault(int(f.stem.split("_")[1]), time.time() * 1000)
        time.sleep(0.02)


def page_report(views: list, latencies: list[float], started: dict[int, float]) -> list[str]:
    def session_of(info: str) -> int | None:
        m = re.search(r"session (\d+) · query", info)
        return int(m.group(1)) if m else None

    first: dict[int, float] = {}
    for t, waiting, info in views:
        s = session_of(info)
        if not waiting and s is not None:
            first.setdefault(s, t)
    # A waiting state inside a session: between two pairs of the same session.
    waits, shown_session, wait_from = [], None, None
    for t, waiting, info in views:
        s = session_of(info)
        if waiting and wait_from is None:
            wait_from = t
        elif not waiting and s is not None:
            if wait_from is not None and s == shown_session:
                waits.append((t - wait_from) / 1000)
            wait_from, shown_session = None, s
    lat = sorted(latencies)
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else float("nan")
    starts = {s: round((first[s] - started[s]) / 1000, 1) for s in sorted(first) if s in started}
    return [
        f"  answer -> next pair playing: median {statistics.median(lat):.0f} ms, p95 {p95:.0f} ms over {len(lat)} "
        f"answers (a wait for the trainer included)"
        if lat
        else "  no answer timed",
        f"  session start -> first pair shown: {starts} s",
        f"  waiting states inside a session: {len(waits)}, {sum(waits):.1f} s in all",
    ]


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
    p.add_argument("--total-timesteps", type=int, default=4000)
    p.add_argument("--labeller", choices=["http", "browser"], default="http")
    p.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose trainer, server and page run")
    p.add_argument("--answer-seconds", type=float, default=None, help="--feedback-answer-seconds of the trainer")
    a = p.parse_args()
    tree = a.tree.resolve()
    if tree != ROOT and os.environ.get("CLEANRLHF_BENCHMARK_TREE") != str(tree):
        # Another checkout's trainer, server and page: run this benchmark again with its modules first on the path.
        path = [str(tree / "framework"), str(tree / "humanFeedback"), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "CLEANRLHF_BENCHMARK_TREE": str(tree), "PYTHONPATH": os.pathsep.join(path)}
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)
    from rlhf.runs import read_scalars  # after the re-exec above: the run reader of the checkout being measured

    page: dict = {}
    started: dict[int, float] = {}
    extra = [] if a.answer_seconds is None else ["--feedback-answer-seconds", str(a.answer_seconds)]
    with tempfile.TemporaryDirectory() as tmp:
        server = start_feedback_server(port=0, data_dir=Path(tmp) / "server")
        stop = threading.Event()
        if a.labeller == "http":
            threads = [threading.Thread(target=labeller, args=(server.url, stop, a.think_seconds), daemon=True)]
        else:
            (Path(tmp) / "runs").mkdir()
            threads = [
                threading.Thread(target=browser_labeller, args=(server.page_url, stop, a.think_seconds, page)),
                threading.Thread(target=watch_sessions, args=(Path(tmp) / "runs", stop, started), daemon=True),
            ]
        for t in threads:
            t.start()
        try:
            subprocess.run(
                [
                    sys.executable,
                    str(a.tree / "framework" / "sac_rlhf.py"),
                    "--env-id",
                    a.env_id,
                    "--total-timesteps",
                    str(a.total_timesteps),
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
                    *extra,
                ],
                check=True,
            )
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            server.stop()
        (run_dir,) = (Path(tmp) / "runs").iterdir()
        scalars = read_scalars(run_dir)
        render = [e.value for e in scalars["feedback/clip_render_seconds"]]
        wait = [e.value for e in scalars["feedback/wait_seconds"]]
    print(
        f"{a.env_id}, segments of 64 steps, {a.clip_size}x{a.clip_size} WebM clips, {a.queries_per_session} "
        f"queries per session, labeller think time {a.think_seconds} s per query:"
    )
    print(f"  clip render + encode per segment (running mean at each session): {[round(x, 2) for x in render]} s")
    print(
        f"  trainer idle per session: {[round(x, 1) for x in wait]} s "
        f"(labelling alone takes {a.queries_per_session * a.think_seconds:.0f} s)"
    )
    if a.labeller == "browser":
        print(f"  the page in Chromium ({a.tree}):")
        print("\n".join(page_report(page.get("views", []), page.get("latencies", []), started)))


if __name__ == "__main__":
    main()
