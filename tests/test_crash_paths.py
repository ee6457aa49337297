"""Crash paths of a human-feedback run (issue 9): a trainer killed with SIGKILL resumes with its surviving
labelling server, every label and nothing asked twice; the token stays out of the run's files and of every
process's command line; a timed-out session is said and its queries withdrawn; a port in use or a runs directory
that cannot be created is one line and exit status 2, with nothing left behind."""

from __future__ import annotations

import os
import signal
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
from script_runs import argv, scalars
from test_human_teacher import HUMAN_RUN, free_port

from rlhf.checkpoint import load_state
from rlhf.feedback_client import FeedbackClient
from rlhf.feedback_server_process import start_feedback_server

TOKEN = "crash-paths-token-7f3a9c1e5b2d"  # a string found nowhere else, to look for
CHOICES = {"A": 0.0, "B": 1.0, "equal": 0.5, "skip": None}


def trainer_env() -> dict[str, str]:
    return dict(os.environ, FEEDBACK_SERVER_TOKEN=TOKEN)


class Labeller(threading.Thread):
    """Answers through the page's HTTP routes with the token (A, B, equal, skip in turn), only queries of the
    sessions in ``allowed``; records every answer in ``given``."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.allowed, self.given = url, {0}, {}
        self.stop = threading.Event()
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def run(self) -> None:
        pattern = list(CHOICES)
        while not self.stop.is_set():
            try:
                query = self.http.post(f"{self.url}/api/claim", json={"labeller": "t"}, timeout=10).json()["query"]
            except (requests.ConnectionError, ValueError):  # no server yet, or between two
                time.sleep(0.2)
                continue
            if query is None or query["session"] not in self.allowed:
                if query is not None:
                    self.http.post(f"{self.url}/api/release", json={"labeller": "t"}, timeout=10)
                time.sleep(0.2)
                continue
            choice = pattern[len(self.given) % 4]
            body = {"labeller": "t", "run_id": query["run_id"], "query_id": query["query_id"], "choice": choice}
            r = self.http.post(f"{self.url}/api/answer", json=body, timeout=10)
            assert r.status_code == 200, r.text
            assert query["query_id"] not in self.given  # nothing is asked twice
            self.given[query["query_id"]] = CHOICES[choice]


class CmdlineWatch(threading.Thread):
    """Looks for the token in every process's command line (what `ps` shows every user) while it runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    if TOKEN.encode() in cmdline.read_bytes():
                        self.seen.append(cmdline.read_bytes().decode(errors="replace"))
                except OSError:
                    pass  # the process ended
            time.sleep(0.2)


def files_with_token(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and TOKEN.encode() in p.read_bytes()]


def wait_until(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the trainer exited ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
@pytest.mark.timeout(600)  # two human-mode trainer runs: ~140 s on an idle 2-core machine, 300 s+ under load
def test_human_run_killed_with_sigkill_resumes_with_every_label_and_keeps_the_token_secret(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flags = argv({**HUMAN_RUN, "--checkpoint-frequency": 50}, tmp_path)
    flags += ["--teacher-feedback-mode", "human", "--feedback-server-autostart", "--feedback-server-url", url]
    script = [sys.executable, "framework/sac_rlhf.py"]
    watch, labeller = CmdlineWatch(), Labeller(url)
    watch.start()
    labeller.start()
    trainer = subprocess.Popen(
        script + flags, cwd=REPO_ROOT, env=trainer_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        status = lambda: FeedbackClient(url, run_dir.name, token=TOKEN, retries=0).status()  # noqa: E731
        wait_until(lambda: list(tmp_path.glob("Hopper*/feedback_server")), 120, "the server's start", trainer)
        (run_dir,) = tmp_path.glob("Hopper*")
        # Session 0 answered and learned, session 1 fully uploaded and waited for: then the trainer dies.
        wait_until(lambda: len(labeller.given) == 4, 180, "session 0's labels", trainer)
        wait_until(lambda: status().total == 8, 180, "session 1's queries", trainer)
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(30)
        asked = np.load(run_dir / "pending_queries" / "session_0001.npz")["a_obs"]  # what labellers are shown
        assert not (run_dir / "checkpoints" / "final.json").exists()

        labeller.allowed = {0, 1}  # the server outlived its trainer: people keep labelling
        wait_until(lambda: len(labeller.given) == 8, 60, "session 1's labels")
        resumed = subprocess.run(
            script + ["--resume", str(run_dir), "--no-progress-bar", "--log-level", "INFO"],
            cwd=REPO_ROOT,
            env=trainer_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        labeller.stop.set()
        watch.stop.set()
        trainer.kill()
        trainer.wait()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert "still runs: using it" in resumed.stderr  # it adopted the server instead of starting a second one
    assert "was asked before the restart" in resumed.stderr
    prefs = load_state(run_dir / "checkpoints" / "final")["feedback"]["preferences"]
    given = labeller.given
    expected = [given[q] for q in sorted(given) if given[q] is not None]
    np.testing.assert_array_equal(prefs["labels"], np.array(expected, np.float32))  # every label, in order
    answered_1 = [i for i in range(4) if given[f"s0001-q{i:03d}"] is not None]
    np.testing.assert_array_equal(prefs["a_obs"][-len(answered_1) :], asked[answered_1])  # the pairs shown
    with socket.socket() as s:  # the resumed run stopped the server it adopted
        assert s.connect_ex(("127.0.0.1", port)) != 0

    assert not watch.seen, watch.seen
    assert TOKEN not in resumed.stderr
    assert not files_with_token(run_dir)
    assert load_state(run_dir / "checkpoints" / "final")["args"]["feedback_server_token"] is None


def test_a_timed_out_session_is_logged_and_its_queries_withdrawn_at_the_end(tmp_path):
    """Nobody labels: each session times out (said in the log), training goes on, and at the end the run's queries
    are withdrawn from the server (which outlives the run here), with asked / answered reported."""
    server = start_feedback_server(port=0, data_dir=tmp_path / "server", token=TOKEN)
    try:
        out = subprocess.run(
            [sys.executable, "framework/sac_rlhf.py", *argv(HUMAN_RUN, tmp_path / "runs")]
            + ["--teacher-feedback-mode", "human", "--feedback-server-url", server.url, "--feedback-timeout", "1"],
            cwd=REPO_ROOT,
            env=trainer_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        (run_dir,) = (tmp_path / "runs").iterdir()
        status = server.client(run_dir.name).status()
    finally:
        server.stop()
    assert "feedback session 0 timed out after 1 s (--feedback-timeout) with 0 of 4 queries answered" in out.stderr
    assert "feedback session 1 timed out" in out.stderr
    assert "this run learned from 0 labels" in out.stderr
    assert status.pending + status.leased == 0 and status.total == 0  # nothing is left for labellers
    asked = scalars(run_dir)["feedback/queries_asked"][-1][1]
    withdrawn = scalars(run_dir)["feedback/queries_withdrawn"][-1][1]
    assert asked == withdrawn > 0 and scalars(run_dir)["feedback/queries_answered"][-1][1] == 0
    assert f"{int(asked)} queries asked, 0 answered" in out.stderr
    assert TOKEN not in out.stderr


def test_autostart_on_a_port_in_use_is_one_line_and_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    import sac_rlhf

    monkeypatch.setenv("FEEDBACK_SERVER_TOKEN", TOKEN)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        flags = argv(HUMAN_RUN, tmp_path / "runs") + ["--teacher-feedback-mode", "human"]
        flags += ["--feedback-server-autostart", "--feedback-server-url", f"http://127.0.0.1:{port}"]
        assert sac_rlhf.cli(flags) == 2  # in-process: the CLI's own exit-status handling; the server is a real one
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("error: --feedback-server-autostart:") and "in use" in line, line
    assert list((tmp_path / "runs").iterdir()) == []
    assert TOKEN not in err


def test_a_runs_directory_that_cannot_be_created_is_one_line(tmp_path, capsys):
    import ppo
    import pref_ppo
    import sac
    import sac_rlhf

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    for module in (sac_rlhf, pref_ppo, sac, ppo):  # in-process: the CLI's own exit-status handling, faster
        assert module.cli(["--runs-dir", str(blocker / "runs"), "--log-level", "WARNING"]) == 2
        err = capsys.readouterr().err
        (line,) = [x for x in err.splitlines() if x.strip()]
        assert line.startswith("error: --runs-dir") and "cannot create" in line, line
    assert blocker.read_text() == "not a directory"


def test_an_evaluation_output_directory_that_cannot_be_created_is_one_line(tmp_path, capsys):
    import evaluation
    from test_evaluation import fake_sac_checkpoint

    run_dir = fake_sac_checkpoint(tmp_path / "run")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    argv_ = ["--path-to-model", str(run_dir), "--episodes", "1", "--output-dir", str(blocker / "out")]
    assert evaluation.cli(argv_) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("error: --output-dir") and "cannot create" in line, line


def test_a_surviving_server_is_adopted_with_its_token_and_replaced_without_it(tmp_path):
    """What --resume does with the server its crashed trainer left on the run's data dir: use it while it answers
    with the run's token; otherwise stop it cleanly and start a new one on the same data (labels kept)."""
    from rlhf.feedback_server_process import RECORD, _alive, adopt_or_start_feedback_server

    data = tmp_path / "feedback_server"
    port = free_port()
    first = start_feedback_server(port=port, data_dir=data, token=TOKEN)  # "the crashed run's" server
    first.client("r").register_run("hop", "Hopper-v5")
    adopted = adopt_or_start_feedback_server("127.0.0.1", port, data, token=TOKEN)
    assert adopted.proc is None and adopted.pid == first.pid  # the same process, not a second server
    other_token = "another-token-0123456789abcdef"
    replaced = adopt_or_start_feedback_server("127.0.0.1", port, data, token=other_token)
    try:
        assert replaced.pid != first.pid and not _alive(first.pid)
        assert replaced.client("r").status().run_id == "r"  # the same data, now behind the new token
    finally:
        replaced.stop()
    assert not (data / RECORD).exists()  # a stopped server leaves no record to adopt
    (data / RECORD).write_text(f'{{"pid": {os.getpid()}, "url": "http://127.0.0.1:{port}"}}')  # a reused pid
    fresh = adopt_or_start_feedback_server("127.0.0.1", port, data, token=TOKEN)
    try:
        assert fresh.proc is not None  # this test process is no feedback server: a new one was started
    finally:
        fresh.stop()
