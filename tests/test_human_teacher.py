"""Human feedback end to end: the trainer renders and uploads clips, a labeller answers through the page's HTTP
routes, and the trainer learns from exactly the answers given."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import REPO_ROOT
from script_runs import TINY_SAC_RLHF, argv

from rlhf.checkpoint import load_state
from rlhf.feedback_server_process import start_feedback_server

HUMAN_RUN = {
    **TINY_SAC_RLHF,
    "--total-timesteps": 700,
    "--teacher-feedback-total-queries": 8,
    "--teacher-feedback-num-queries-per-session": 4,
    "--feedback-clip-size": 48,
    "--evaluation-frequency": 700,
    "--threads": 1,
}
CHOICES = {"A": 0.0, "B": 1.0, "equal": 0.5, "skip": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_everything(url: str, given: dict, stop: threading.Event, undo_once: bool = True) -> None:
    """A scripted labeller using the page's routes: A, B, equal, skip in turn; undoes its second answer once."""
    http = requests.Session()
    pattern = ["A", "B", "equal", "skip"]
    n = 0
    undone = not undo_once
    while not stop.is_set():
        try:
            claim = http.post(f"{url}/api/claim", json={"labeller": "tester"}, timeout=10).json()
        except requests.ConnectionError:  # the trainer stopped its server at the end of the run
            time.sleep(0.2)
            continue
        query = claim["query"]
        if query is None:
            http.get(f"{url}/api/wait", params={"wait": 1}, timeout=10)
            continue
        assert http.get(url + query["clip_a_url"], timeout=10).content[:4] == b"\x1aE\xdf\xa3"  # a WebM file
        choice = pattern[n % len(pattern)]
        r = http.post(
            f"{url}/api/answer",
            json={"labeller": "tester", "run_id": query["run_id"], "query_id": query["query_id"], "choice": choice},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        given[query["query_id"]] = CHOICES[choice]
        n += 1
        if not undone and n == 2:  # change my mind about the second query: the trainer must get the new answer
            undone = True
            back = http.post(f"{url}/api/undo", json={"labeller": "tester"}, timeout=10).json()["query"]
            r = http.post(
                f"{url}/api/answer",
                json={"labeller": "tester", "run_id": back["run_id"], "query_id": back["query_id"], "choice": "equal"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            given[back["query_id"]] = 0.5


def check_trainer_got_exactly(run_dir: Path, given: dict) -> None:
    prefs = load_state(run_dir / "checkpoints" / "final")["feedback"]["preferences"]
    expected = [given[q] for q in sorted(given) if given[q] is not None]
    np.testing.assert_array_equal(prefs["labels"], np.array(expected, np.float32))
    assert len(given) == 8


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
def test_human_feedback_with_a_separate_server(tmp_path):
    """Trainer and server with separate data dirs (no shared filesystem): everything crosses HTTP."""
    server = start_feedback_server(port=0, data_dir=tmp_path / "server_data")
    given: dict = {}
    stop = threading.Event()
    labeller = threading.Thread(target=label_everything, args=(server.url, given, stop), daemon=True)
    labeller.start()
    try:
        out = subprocess.run(
            [
                sys.executable,
                "framework/sac_rlhf.py",
                *argv(HUMAN_RUN, tmp_path / "runs"),
                "--teacher-feedback-mode",
                "human",
                "--feedback-server-url",
                server.url,
                "--feedback-instruction",
                "hop forward",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        stop.set()
        labeller.join(timeout=15)
        server.stop()
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    check_trainer_got_exactly(run_dir, given)
    assert not (run_dir / "feedback_server").exists()  # the server kept its data in its own directory


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
def test_autostarted_server_serves_the_page_and_labels_move_training(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    trainer = subprocess.Popen(
        [
            sys.executable,
            "framework/sac_rlhf.py",
            *argv(HUMAN_RUN, tmp_path),
            "--teacher-feedback-mode",
            "human",
            "--feedback-server-autostart",
            "--feedback-server-url",
            url,
        ],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    given: dict = {}
    stop = threading.Event()
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                page = requests.get(url + "/", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert page.status_code == 200 and "<video" in page.text
        labeller = threading.Thread(target=label_everything, args=(url, given, stop, False), daemon=True)
        labeller.start()
        _, err = trainer.communicate(timeout=240)
    finally:
        stop.set()
        trainer.kill()
    assert trainer.returncode == 0, err[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("Hopper")]
    check_trainer_got_exactly(run_dir, given)
    with socket.socket() as s:  # the trainer stopped its server
        assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
def test_a_restarted_trainer_gets_its_labels_back_and_asks_nothing_again(tmp_path):
    """The trainer submits a session and dies; labels are given meanwhile; a new trainer of the same run (same run
    id and run directory) collects exactly those labels without uploading any query again."""
    from test_replay import fill

    from rlhf.feedback_client import FeedbackClient
    from rlhf.human import HumanTeacher
    from rlhf.replay import ReplayBuffer

    rb = fill(ReplayBuffer(200, 3, 2, 4), [(60, False), (60, False)])
    rng = np.random.default_rng(0)
    seg_a, seg_b = rb.sample_segments(3, 16, rng), rb.sample_segments(3, 16, rng)
    from rlhf.envs import get_physics_state, make_env

    hopper = make_env("Hopper-v5", seed=0)
    hopper.reset(seed=0)
    state = get_physics_state(hopper).astype(np.float32)
    hopper.close()
    for seg in (seg_a, seg_b):  # real Hopper states, so that the clips render
        seg.physics_states = np.broadcast_to(state, (3, 16, len(state))).copy()
    server = start_feedback_server(port=0, data_dir=tmp_path / "server")
    try:
        first = HumanTeacher(FeedbackClient(server.url, "run-1"), "Hopper-v5", "hop", tmp_path / "pending", 32)
        first.submit(seg_a, seg_b, session=0)
        deadline = time.time() + 60
        while server.client("run-1").status().total < 3 and time.time() < deadline:
            time.sleep(0.1)
        first.close()  # the trainer is gone; its queries are on the server
        given: dict = {}
        stop = threading.Event()
        labeller = threading.Thread(target=label_everything, args=(server.url, given, stop, False), daemon=True)
        labeller.start()
        while len(given) < 3 and time.time() < deadline:
            time.sleep(0.1)
        stop.set()
        labeller.join(timeout=15)
        uploads_before = server.client("run-1").status().total
        second = HumanTeacher(FeedbackClient(server.url, "run-1"), "Hopper-v5", "hop", tmp_path / "pending", 32)
        (answers,) = second.collect(wait=True, timeout=30)
        second.close()
        assert server.client("run-1").status().total == uploads_before == 3  # nothing asked again
    finally:
        server.stop()
    expected = [given[f"s0000-q{i:03d}"] for i in range(3)]
    np.testing.assert_array_equal(answers.labels, np.array([np.nan if x is None else x for x in expected], np.float32))
    np.testing.assert_array_equal(answers.seg_a.obs, seg_a.obs)  # the labels come back with the segments' data


def test_a_session_is_shown_once_a_labeller_would_never_catch_up_with_rendering():
    """ready_to_show against the closed form (issue 12, item 2): with pairs rendered every r s and answered every
    t s, showing the first k of n at once never leaves the labeller waiting iff r <= k t and (n - k) r <= (n - 1) t;
    the first k where it says yes is the smallest such k, found by simulating the labeller pair by pair."""
    from rlhf.query_publisher import ready_to_show

    assert ready_to_show(1, 10, pair_seconds=1.0, answer_seconds=2.0)  # rendering keeps up: the first pair at once
    assert not ready_to_show(7, 10, 8.0, 2.0) and ready_to_show(8, 10, 8.0, 2.0)  # 10 - 9 * 2 / 8 = 7.75
    assert not ready_to_show(1, 3, 3.0, 2.0) and ready_to_show(2, 3, 3.0, 2.0)
    assert ready_to_show(1, 10, 60.0, 0.0) and not ready_to_show(0, 10, 0.1, 0.0)  # 0: each pair when it exists
    assert ready_to_show(5, 5, 100.0, 1.0)  # the whole session is there

    def labeller_waits(k: int, n: int, r: float, t: float) -> bool:
        shown_at, ready = k * r, [j * r for j in range(1, n + 1)]  # pair j (1-based) exists at j r
        clock = shown_at
        for j in range(2, n + 1):
            clock += t  # the answer to pair j - 1
            if ready[j - 1] > clock + 1e-9:
                return True
        return False

    rng = np.random.default_rng(0)
    for _ in range(300):
        n, r, t = int(rng.integers(1, 30)), float(rng.uniform(0.1, 10)), float(rng.uniform(0.1, 10))
        k = next(k for k in range(1, n + 1) if ready_to_show(k, n, r, t))
        assert not labeller_waits(k, n, r, t), (k, n, r, t)
        assert k == 1 or labeller_waits(k - 1, n, r, t), (k, n, r, t)
