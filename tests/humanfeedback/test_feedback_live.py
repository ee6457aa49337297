"""The real server (CLI, waitress) over a socket, driven through the trainer's client: end to end, kill -9
durability, several labellers at once, lease expiry, long-poll latency, clean SIGTERM, refusing to bind beyond
loopback without a token."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from rlhf.feedback_client import (
    FeedbackClient,
    FeedbackConnectionError,
    FeedbackServerError,
)
from rlhf.feedback_server_process import start_feedback_server
from rlhf.label_log import LabelLog

from .feedback_testutil import REPO, TOKEN

SERVER = REPO / "humanFeedback" / "feedback_server.py"
CHOICE_LABEL = {"A": 0.0, "B": 1.0, "equal": 0.5}


class Labeller:
    """What the page does, over HTTP."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def claim(self):
        r = self.http.post(self.url + "/api/claim", json={"labeller": self.name}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["query"]

    def answer(self, q, choice):
        return self.http.post(
            self.url + "/api/answer",
            timeout=10,
            json={"labeller": self.name, "run_id": q["run_id"], "query_id": q["query_id"], "choice": choice},
        )

    def undo(self):
        return self.http.post(self.url + "/api/undo", json={"labeller": self.name}, timeout=10)


def upload_n(client: FeedbackClient, clips, n: int, session: int = 1) -> list[str]:
    ids = [f"s{session}-q{i}" for i in range(n)]
    for i, qid in enumerate(ids):
        r = client.upload_query(qid, session, clips[i % len(clips)], clips[(i + 1) % len(clips)])
        assert r["created"]
    return ids


def test_end_to_end_through_the_client(live_server, webm_clips, tmp_path):
    trainer = live_server.client("hopper-s1")
    run = trainer.register_run("make the hopper hop forward", "Hopper-v5", meta={"seed": 1})
    assert run["run_id"] == "hopper-s1" and trainer.register_run("other", "Hopper-v5") == run
    ids = upload_n(trainer, webm_clips, 3)
    assert trainer.upload_query(ids[0], 1, webm_clips[0], webm_clips[1])["created"] is False  # idempotent
    assert trainer.status().pending == 3
    ann = Labeller(live_server.url, "ann")
    given = {}
    for choice in ["A", "B", "skip"]:
        q = ann.claim()
        assert ann.answer(q, choice).status_code == 200
        given[q["query_id"]] = choice
    log = LabelLog()
    log.apply(trainer.events(after=0, wait=1))
    assert log.labels == {ids[0]: 0.0, ids[1]: 1.0} and log.skipped == {ids[2]}
    assert trainer.events(after=log.last_seq, wait=0.2) == []
    st = trainer.status()
    assert (st.pending, st.leased, st.labelled, st.skipped, st.last_seq) == (0, 0, 2, 1, 3)
    # A restarted trainer (new client, nothing shared but the URL) gets the whole history back.
    again = LabelLog()
    again.apply(FeedbackClient(live_server.url, "hopper-s1", token=TOKEN).all_events())
    assert again == log
    with pytest.raises(FeedbackServerError) as e:
        FeedbackClient(live_server.url, "no-such-run", token=TOKEN).status()
    assert e.value.status == 404 and e.value.error == "unknown_run"
    with pytest.raises(FeedbackServerError) as e:
        FeedbackClient(live_server.url, "hopper-s1", token="wrong-token-0123456789").status()
    assert e.value.status == 401
    # The trainer shares no files with the server: the clips reached the server's own store over HTTP.
    assert len(list((tmp_path / "server-data" / "clips").iterdir())) == 4


def test_long_poll_returns_as_soon_as_a_label_arrives(live_server, webm_clips):
    trainer = live_server.client("r")
    trainer.register_run("hop", "Hopper-v5")
    upload_n(trainer, webm_clips, 1)
    got: list = []

    def poll():
        t0 = time.monotonic()
        got.append((trainer.events(after=0, wait=20), time.monotonic() - t0))

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    ann = Labeller(live_server.url, "ann")
    t_answer = time.monotonic()
    assert ann.answer(ann.claim(), "B").status_code == 200
    t.join(10)
    ((events, elapsed),) = got
    assert [e.label for e in events] == [1.0]
    assert elapsed < 3.0, elapsed  # woken by the label, not by the 20 s timeout
    assert time.monotonic() - t_answer < 2.0


def test_kill_9_loses_no_acknowledged_label(tmp_path, webm_clips):
    data = tmp_path / "data"
    server = start_feedback_server(port=0, data_dir=data, token=TOKEN)
    trainer = server.client("durable")
    trainer.register_run("hop", "Hopper-v5")
    ids = upload_n(trainer, webm_clips, 12)
    acked: list[tuple[str, str]] = []
    ann, bob = Labeller(server.url, "ann"), Labeller(server.url, "bob")
    rng = random.Random(0)
    for i in range(10):
        who = ann if i % 2 else bob
        q = who.claim()
        choice = rng.choice(["A", "B", "equal", "skip"])
        r = who.answer(q, choice)
        assert r.status_code == 200
        acked.append((q["query_id"], choice))
        if i == 6:
            assert who.undo().status_code == 200  # a retract is acknowledged state too
            acked.pop()
            assert who.answer(who.claim(), "A").status_code == 200
            acked.append((q["query_id"], "A"))
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    assert server.proc.returncode == -signal.SIGKILL
    # Restart on the same data dir (the WAL is replayed) and read everything back from after=0.
    server2 = start_feedback_server(port=0, data_dir=data, token=TOKEN)
    try:
        trainer2 = server2.client("durable")
        after = trainer2.all_events()
        assert len(after) == 12  # 10 answers, 1 retract, 1 answer again
        log = LabelLog()
        log.apply(after)
        assert log.labels == {q: CHOICE_LABEL[c] for q, c in acked if c != "skip"}
        assert log.skipped == {q for q, c in acked if c == "skip"}
        assert {e.labeller for e in after} == {"ann", "bob"}
        st = trainer2.status()
        assert st.labelled + st.skipped == 10 and st.total == 12
        # The queries and clips survived too: the remaining ones are served and playable.
        q = Labeller(server2.url, "carl").claim()
        assert q["query_id"] in ids
        clip = requests.get(server2.url + q["clip_a_url"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert clip.status_code == 200 and clip.content in webm_clips
    finally:
        server2.stop()


def test_kill_9_while_labels_are_flowing(tmp_path, webm_clips):
    """Labellers keep answering while the server is killed: every answer acknowledged before the kill is back."""
    data = tmp_path / "data"
    server = start_feedback_server(port=0, data_dir=data, token=TOKEN)
    trainer = server.client("flow")
    trainer.register_run("hop", "Hopper-v5")
    upload_n(trainer, webm_clips, 60)
    acked: list[tuple[str, str, float]] = []  # (query, labeller, label) answered with a 2xx
    guard = threading.Lock()

    def work(name: str) -> None:
        lab = Labeller(server.url, name)
        try:
            while (q := lab.claim()) is not None:
                r = lab.answer(q, "B")
                if r.status_code == 200:
                    with guard:
                        acked.append((q["query_id"], name, 1.0))
        except (requests.RequestException, AssertionError):
            return  # the server is gone

    threads = [threading.Thread(target=work, args=(f"l{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    while len(acked) < 20:
        time.sleep(0.005)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    for t in threads:
        t.join(20)
    with guard:
        acknowledged = list(acked)
    with start_feedback_server(port=0, data_dir=data, token=TOKEN) as server2:
        log = LabelLog()
        events = server2.client("flow").all_events()
        log.apply(events)
        by_query = {e.query_id: e.labeller for e in events}
        for query_id, name, label in acknowledged:
            assert log.labels.get(query_id) == label and by_query[query_id] == name
        # At most one answer per labeller was committed but not acknowledged (in flight at the kill).
        assert len(acknowledged) <= len(log.labels) <= len(acknowledged) + 3


def test_many_labellers_never_share_a_leased_query(live_server, webm_clips):
    trainer = live_server.client("crowd")
    trainer.register_run("hop", "Hopper-v5")
    ids = upload_n(trainer, webm_clips, 30)
    holders: dict[str, str] = {}
    guard = threading.Lock()
    violations: list[str] = []
    answered: list[tuple[str, str, str]] = []  # (query, labeller, choice), acknowledged and not undone

    def work(name: str, seed: int) -> None:
        rng = random.Random(seed)
        lab = Labeller(live_server.url, name)
        while True:
            q = lab.claim()
            if q is None:
                return
            with guard:
                other = holders.get(q["query_id"])
                if other not in (None, name):
                    violations.append(f"{q['query_id']} handed to {name} while leased to {other}")
                holders[q["query_id"]] = name
            time.sleep(rng.random() * 0.01)
            choice = rng.choice(["A", "B", "equal", "skip"])
            with guard:
                holders.pop(q["query_id"], None)  # released before the answer is sent: answered queries are done
            r = lab.answer(q, choice)
            assert r.status_code == 200, r.text
            with guard:
                answered.append((q["query_id"], name, choice))
            if rng.random() < 0.15:
                u = lab.undo()
                assert u.status_code == 200, u.text
                with guard:
                    last = max(i for i, a in enumerate(answered) if a[1] == name)
                    answered.pop(last)
                    holders[u.json()["query"]["query_id"]] = name

    threads = [threading.Thread(target=work, args=(f"labeller-{i}", i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not violations
    assert sorted(q for q, _, _ in answered) == sorted(ids)  # every query answered exactly once, none lost
    events = trainer.all_events()
    log = LabelLog()
    log.apply(events)
    assert log.labels == {q: CHOICE_LABEL[c] for q, _, c in answered if c != "skip"}
    assert log.skipped == {q for q, _, c in answered if c == "skip"}
    final = {}
    for e in events:
        final[e.query_id] = None if e.type == "retract" else e.labeller
    assert final == {q: who for q, who, _ in answered}  # each answer records who gave it
    assert all(e.created_at.endswith("Z") for e in events)
    assert len({e.labeller for e in events}) > 1


def test_lease_expiry_rehands_a_query(tmp_path, webm_clips):
    with start_feedback_server(port=0, data_dir=tmp_path / "d", token=TOKEN, lease_seconds=1.5) as server:
        trainer = server.client("lease")
        trainer.register_run("hop", "Hopper-v5")
        upload_n(trainer, webm_clips, 1)
        ann, bob = Labeller(server.url, "ann"), Labeller(server.url, "bob")
        q = ann.claim()
        assert q is not None and bob.claim() is None  # leased: never handed to a second labeller
        # bob waits for work without polling: the server wakes him when ann's lease runs out.
        t0 = time.monotonic()
        r = bob.http.get(server.url + "/api/wait?wait=10", timeout=15)
        assert r.json() == {"claimable": 1} and time.monotonic() - t0 < 4.0
        q2 = bob.claim()
        assert q2["query_id"] == q["query_id"] and q2["lease_holder"] == "bob"
        assert ann.answer(q, "A").status_code == 409  # ann's lease expired and bob holds it now
        assert bob.answer(q2, "B").status_code == 200
        assert [(e.labeller, e.label) for e in trainer.all_events()] == [("bob", 1.0)]


def test_sigterm_stops_cleanly_even_with_open_long_polls(tmp_path):
    server = start_feedback_server(port=0, data_dir=tmp_path / "d", token=TOKEN)
    trainer = server.client("r")
    trainer.register_run("hop", "Hopper-v5")
    t = threading.Thread(target=lambda: trainer.events(after=0, wait=25), daemon=True)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert server.stop(timeout=10) == 0
    assert time.monotonic() - t0 < 5.0
    assert "feedback server stopped" in server.log_path.read_text()
    # The WAL was checkpointed into the database on the way out.
    assert (
        not (tmp_path / "d" / "feedback.sqlite3-wal").exists()
        or (tmp_path / "d" / "feedback.sqlite3-wal").stat().st_size == 0
    )


def test_client_retries_while_the_server_is_starting(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = FeedbackClient(f"http://127.0.0.1:{port}", "r", token=TOKEN, retries=8, backoff=0.1)
    result: list = []
    t = threading.Thread(target=lambda: result.append(client.register_run("hop", "Hopper-v5")))
    t.start()
    time.sleep(0.4)
    with start_feedback_server(port=port, data_dir=tmp_path / "d", token=TOKEN):
        t.join(30)
        assert result and result[0]["run_id"] == "r"
    with pytest.raises(FeedbackConnectionError):
        FeedbackClient(f"http://127.0.0.1:{port}", "r", retries=1, backoff=0.01).health()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10"])
def test_refuses_non_loopback_bind_without_token(tmp_path, host):
    env = {k: v for k, v in os.environ.items() if k != "FEEDBACK_SERVER_TOKEN"}
    p = subprocess.run(
        [sys.executable, str(SERVER), "--host", host, "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd="/",
    )
    assert p.returncode == 2
    assert "refusing to bind" in p.stderr and "--token" in p.stderr


def test_start_failure_reports_the_log(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(RuntimeError, match="exited with code 2"):
            start_feedback_server(port=busy, data_dir=tmp_path / "d")


def test_cli_runs_from_any_directory(tmp_path):
    """Paths come from __file__: started from / with a relative-free command line, the page and static files load."""
    server = start_feedback_server(port=0, data_dir=Path(tmp_path) / "d")
    try:
        assert requests.get(server.url + "/", timeout=5).status_code == 200  # loopback, no token needed
        assert requests.get(server.url + "/static/feedback.js", timeout=5).status_code == 200
    finally:
        server.stop()


def test_one_server_per_data_dir(live_server, tmp_path):
    """Leases and wake-ups live in one process, so a second server on the same data dir refuses to start."""
    p = subprocess.run(
        [sys.executable, str(SERVER), "--port", "0", "--data-dir", str(tmp_path / "server-data")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 1 and "already using" in p.stderr
    assert live_server.client("x").health()["status"] == "ok"


def test_oversize_upload_over_a_socket(tmp_path, webm_clips):
    """Through waitress, an oversize upload is refused with a 413 (JSON up to twice the limit) and stores nothing."""
    with start_feedback_server(port=0, data_dir=tmp_path / "d", token=TOKEN, max_upload_mb=0.5) as server:
        trainer = server.client("r", retries=0)
        trainer.register_run("hop", "Hopper-v5")
        big = webm_clips[0] + b"\0" * (700 * 1024)
        with pytest.raises(FeedbackServerError) as e:
            trainer.upload_query("q0", 1, big, webm_clips[1])
        assert e.value.status == 413 and e.value.error == "too_large"
        huge = webm_clips[0] + b"\0" * (2 * 1024 * 1024)
        with pytest.raises((FeedbackServerError, FeedbackConnectionError)) as e2:
            trainer.upload_query("q1", 1, huge, webm_clips[1])
        assert isinstance(e2.value, FeedbackConnectionError) or e2.value.status == 413
        assert trainer.status().total == 0
        assert trainer.upload_query("q2", 1, webm_clips[0], webm_clips[1])["created"]


def test_wait_for_answers_of_a_session(live_server, webm_clips):
    trainer = live_server.client("sess")
    trainer.register_run("hop", "Hopper-v5")
    ids = upload_n(trainer, webm_clips, 3, session=4)
    assert trainer.is_up() and not FeedbackClient("http://127.0.0.1:9", "x").is_up()
    log = LabelLog()
    t0 = time.monotonic()
    assert trainer.wait_for(ids, log, timeout=0.3) is False  # nobody labels: the timeout policy applies
    assert 0.25 < time.monotonic() - t0 < 2.0

    def label_all():
        ann = Labeller(live_server.url, "ann")
        for choice in ["A", "skip", "equal"]:
            time.sleep(0.1)
            ann.answer(ann.claim(), choice)

    t = threading.Thread(target=label_all)
    t.start()
    progress: list[int] = []
    assert trainer.wait_for(ids, log, timeout=20, on_progress=lambda _log, missing: progress.append(missing))
    t.join()
    assert log.labels == {ids[0]: 0.0, ids[2]: 0.5} and log.skipped == {ids[1]}
    assert progress[0] == 3 and progress[-1] == 0 and progress == sorted(progress, reverse=True)
    assert len(progress) <= 5  # woken once per event batch, not polling
