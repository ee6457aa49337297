"""The server's command line (issue 9, item 4): a data dir that cannot be created, a port in use, a non-finite or
out-of-range number in any flag, a token that cannot travel in a header or a link: one line on stderr, exit code 2,
and nothing left behind. And a second signal during the shutdown (a second Ctrl-C, or `uv run` forwarding one
signal twice) does not stop the shutdown from finishing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from rlhf.feedback_server_process import start_feedback_server

from .feedback_testutil import REPO, TOKEN, serve

SERVER = REPO / "humanFeedback" / "feedback_server.py"
ENV = {k: v for k, v in os.environ.items() if k != "FEEDBACK_SERVER_TOKEN"}


def run_server(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SERVER), *args], capture_output=True, text=True, timeout=timeout, env=env or ENV, cwd="/"
    )


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``main(args)`` in this process (no start-up cost) for the refusals that return before serving."""
    import feedback_server

    capsys.readouterr()
    try:
        code = feedback_server.main(list(args))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line_exit_2(p: subprocess.CompletedProcess, *expected: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    for text in expected:
        assert text in p.stderr, p.stderr
    assert "Open http" not in p.stdout


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--lease-seconds", "nan"),
        ("--lease-seconds", "inf"),
        ("--lease-seconds", "-inf"),
        ("--lease-seconds", "0"),
        ("--lease-seconds", "-5"),
        ("--lease-seconds", "1e300"),  # accepted before, then every claim failed (no such date)
        ("--lease-seconds", "0.0001"),  # the page would renew its lease every 33 microseconds
        ("--lease-seconds", "soon"),
        ("--max-upload-mb", "nan"),
        ("--max-upload-mb", "inf"),
        ("--max-upload-mb", "0"),
        ("--max-upload-mb", "1e-9"),  # every request, even a claim, would be too large
        ("--max-upload-mb", "1e12"),
        ("--threads", "1"),
        ("--threads", "1000000"),
        ("--threads", "2.5"),
        ("--port", "-1"),
        ("--port", "65536"),
        ("--port", "0x10"),
    ],
)
def test_bad_numbers_in_flags(tmp_path, capsys, monkeypatch, flag, value):
    monkeypatch.delenv("FEEDBACK_SERVER_TOKEN", raising=False)
    data = tmp_path / "data"
    assert_one_line_exit_2(in_process(capsys, "--port", "0", "--data-dir", str(data), flag, value), flag)
    assert not data.exists()


def test_bad_numbers_through_the_real_command(tmp_path):
    for flag, value in [("--lease-seconds", "inf"), ("--max-upload-mb", "nan")]:
        assert_one_line_exit_2(run_server("--port", "0", "--data-dir", str(tmp_path / "d"), flag, value), flag)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("token", ["has space", "naïve-token-0123456789", "tab\tinside-0123456789", "x" * 600])
def test_a_token_that_cannot_travel_in_a_header_or_link(tmp_path, capsys, monkeypatch, token):
    data = tmp_path / "data"
    monkeypatch.delenv("FEEDBACK_SERVER_TOKEN", raising=False)
    assert_one_line_exit_2(in_process(capsys, "--port", "0", "--data-dir", str(data), "--token", token), "--token")
    monkeypatch.setenv("FEEDBACK_SERVER_TOKEN", token)
    assert_one_line_exit_2(in_process(capsys, "--port", "0", "--data-dir", str(data)), "FEEDBACK_SERVER_TOKEN")
    assert not data.exists()


def test_data_dir_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert_one_line_exit_2(run_server("--port", "0", "--data-dir", str(blocker / "data")), "is a file")
    for data in (blocker / "deeper" / "data", blocker):
        assert_one_line_exit_2(in_process(capsys, "--port", "0", "--data-dir", str(data)), "--data-dir", str(data))
    assert blocker.read_text() == "not a directory" and sorted(tmp_path.iterdir()) == [blocker]


def test_port_in_use_leaves_nothing_behind(tmp_path):
    data = tmp_path / "new" / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert_one_line_exit_2(run_server("--port", str(busy), "--data-dir", str(data)), "already in use", str(busy))
        assert not (tmp_path / "new").exists()
        # The trainer's autostart reports the code and the line.
        with pytest.raises(RuntimeError, match="(?s)exited with code 2.*already in use"):
            start_feedback_server(port=busy, data_dir=tmp_path / "d")


def test_a_host_that_cannot_be_bound(tmp_path):
    p = run_server("--host", "no such host..", "--token", TOKEN, "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert_one_line_exit_2(p, "cannot listen")
    assert not (tmp_path / "d").exists()


def test_a_token_with_url_characters_survives_the_printed_link(tmp_path):
    token = "a&b=c+d/e%f#g?h-0123456789"
    with serve(tmp_path / "d", "--token", token):  # a token given on the command line is printed in the link
        line = next(x for x in (tmp_path / "d.log").read_text().splitlines() if x.startswith("Open "))
        assert parse_qs(urlsplit(line[len("Open ") :]).query)["token"] == [token]
        assert requests.get(line[len("Open ") :], timeout=5).status_code == 200  # the link itself works
    # One from the environment is not (the trainer keeps an autostarted server's log in the shared run directory).
    with start_feedback_server(port=0, data_dir=tmp_path / "e", token=token) as server:
        line = next(x for x in server.log_path.read_text().splitlines() if x.startswith("Open "))
        assert line.endswith("/?token=$FEEDBACK_SERVER_TOKEN") and token not in server.log_path.read_text()
        assert server.client("r").health()["status"] == "ok"


def test_repeated_signals_during_shutdown_still_stop_cleanly(tmp_path):
    """A burst of SIGTERMs and SIGINTs: the server still finishes its shutdown (checkpointed WAL, exit 0)."""
    for attempt in range(2):
        server = start_feedback_server(port=0, data_dir=tmp_path / f"d{attempt}", token=TOKEN)
        client = server.client("r")
        client.register_run("hop", "Hopper-v5")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM if attempt % 2 else signal.SIGINT)
            time.sleep(0.0005)
        try:
            code = server.proc.wait(15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
            pytest.fail("the server hung in its shutdown after a second signal")
        assert code == 0, server.log_path.read_text()[-2000:]
        assert "feedback server stopped" in server.log_path.read_text()


def test_screenshot_and_bench_flags_are_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    shot = REPO / "humanFeedback" / "feedback_screenshot.py"
    bench = REPO / "humanFeedback" / "feedback_bench.py"
    for script, args, expected in [
        (shot, ["--out", str(blocker / "x.png")], "cannot create"),
        (shot, ["--out", str(tmp_path / "x.txt")], ".png"),
        (shot, ["--chromium", "/no/chromium", "--out", str(tmp_path / "x.png")], "not found"),
        (bench, ["--queries", "0"], "--queries"),
        (bench, ["--clip-kb", "100000000"], "--clip-kb"),
    ]:
        p = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and expected in p.stderr and "Traceback" not in p.stderr, (script.name, args, p.stderr)
    assert sorted(tmp_path.iterdir()) == [blocker]
