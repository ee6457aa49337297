"""The server's machine-readable ready signal (issue 8, item 5): every program that starts the labelling server finds
it by its ``--ready-file``, not by the "Open http://..." line it prints for people. A real server wrapped to print a
wrong line is still found; one that never writes the file is a one-line start-up error after the timeout.

Checked to fail: with the trainer's old "Open" line parser put back in start_feedback_server,
test_start_feedback_server_ignores_a_wrong_open_line fails (it waits for the wrong address until the timeout), and
test_a_server_that_never_gets_ready_is_a_timeout_error fails (the line alone was taken as ready); with the tests'
old parser in feedback_testutil.serve, test_the_testutil_server_ignores_a_wrong_open_line fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import rlhf.feedback_server_process as fsp
from rlhf.feedback_server_process import FeedbackServerStartError, start_feedback_server
from rlhf.server_ready import ServerExited, ServerNotReady, ServerReady, read_ready_file, wait_for_ready_file

from .feedback_testutil import REPO, TOKEN, serve

SERVER = REPO / "humanFeedback" / "feedback_server.py"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WRONG_LINE = "Open http://127.0.0.1:9/?token=x"  # port 9 (discard): nothing answers there

# The real server, run by path, with one thing changed before it starts: its printed "Open" line, or its ready file.
WRAPPER = """
import builtins, runpy, sys
REAL = {real!r}
if {wrong_line!r}:
    _print = builtins.print
    def _wrong(*args, **kw):
        if args and str(args[0]).startswith("Open "):
            args = ({wrong_line!r},)
        _print(*args, **kw)
    builtins.print = _wrong
if {no_ready_file!r}:
    import server_options
    server_options.write_ready_file = lambda *args: None
sys.argv[0] = REAL
runpy.run_path(REAL, run_name="__main__")
"""


def wrapped_server(tmp_path: Path, wrong_line: str = "", no_ready_file: bool = False) -> Path:
    script = tmp_path / "wrapped_server.py"
    script.write_text(WRAPPER.format(real=str(SERVER), wrong_line=wrong_line, no_ready_file=no_ready_file))
    return script


def test_start_feedback_server_ignores_a_wrong_open_line(tmp_path, monkeypatch):
    monkeypatch.setattr(fsp, "SERVER_SCRIPT", wrapped_server(tmp_path, wrong_line=WRONG_LINE))
    with start_feedback_server(port=0, data_dir=tmp_path / "d", token=TOKEN, startup_timeout=60) as server:
        assert WRONG_LINE in server.log_path.read_text()  # the wrapper did change what it printed
        assert server.url != "http://127.0.0.1:9" and server.client("r").health()["status"] == "ok"
        ready = read_ready_file(tmp_path / "d" / fsp.READY_FILE)
        assert ready.pid == server.pid and server.url == f"http://127.0.0.1:{ready.port}"
        # The record a resumed run adopts the server by holds the address from the ready file.
        assert json.loads((tmp_path / "d" / fsp.RECORD).read_text()) == {"pid": server.pid, "url": server.url}
    assert not (tmp_path / "d" / fsp.READY_FILE).exists()  # removed on the clean stop


def test_a_server_that_never_gets_ready_is_a_timeout_error(tmp_path, monkeypatch):
    monkeypatch.setattr(fsp, "SERVER_SCRIPT", wrapped_server(tmp_path, no_ready_file=True))
    data = tmp_path / "new"
    with pytest.raises(FeedbackServerStartError) as err:
        start_feedback_server(port=0, data_dir=data, token=TOKEN, startup_timeout=2)
    message = str(err.value)
    assert "not ready within 2 s" in message and "\n" not in message
    assert not data.exists()  # a failed start leaves nothing: the directory it created is gone


def test_the_testutil_server_ignores_a_wrong_open_line(tmp_path):
    with serve(tmp_path / "d", script=wrapped_server(tmp_path, wrong_line=WRONG_LINE)) as url:
        assert WRONG_LINE in (tmp_path / "d.log").read_text()
        assert requests.get(f"{url}/api/health", headers=AUTH, timeout=10).json()["status"] == "ok"


def test_a_server_bound_to_every_interface_is_reached_on_loopback(tmp_path):
    with start_feedback_server(host="0.0.0.0", port=0, data_dir=tmp_path / "d", token=TOKEN) as server:
        ready = read_ready_file(tmp_path / "d" / fsp.READY_FILE)
        assert not ready.url.startswith("http://0.0.0.0")  # the server shows the machine's name, for people
        assert server.url == f"http://127.0.0.1:{ready.port}" and server.client("r").health()["status"] == "ok"


def test_the_bench_finds_the_server_by_its_ready_file(tmp_path):
    """feedback_bench.py sends the server's output to /dev/null: it can only have found it by the ready file."""
    p = subprocess.run(
        [sys.executable, str(REPO / "humanFeedback" / "feedback_bench.py"), "--queries", "2", "--clip-kb", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "claim:" in p.stdout and "(n=2)" in p.stdout


@pytest.mark.slow
@pytest.mark.browser
def test_the_screenshot_tool_finds_the_server_by_its_ready_file(tmp_path, chromium_path):
    out = tmp_path / "shot.png"
    tool = REPO / "humanFeedback" / "feedback_screenshot.py"
    p = subprocess.run(
        [sys.executable, str(tool), "--out", str(out), "--chromium", chromium_path],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- the helper, against stand-in processes
def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def _ready(path: Path, pid: int, api_version: int = 1) -> None:
    info = {"url": "http://box:1234", "port": 1234, "pid": pid, "data_dir": "/d", "api_version": api_version}
    path.write_text(json.dumps(info))


def test_wait_returns_the_file_of_its_own_process_only(tmp_path):
    path = tmp_path / "ready.json"
    _ready(path, pid=os.getpid())  # a stale file: another process wrote it
    proc = _python(
        "import json, os, sys, time; time.sleep(0.5); "
        f"json.dump(dict(url='http://box:1234', port=1234, pid=os.getpid(), data_dir='/d', api_version=1), "
        f"open({str(path) + '.tmp'!r}, 'w')); os.replace({str(path) + '.tmp'!r}, {str(path)!r}); time.sleep(30)"
    )
    try:
        ready = wait_for_ready_file(path, proc, timeout=60)
        assert ready == ServerReady("http://box:1234", 1234, proc.pid, "/d", 1)
        assert ready.local_url("box") == "http://box:1234" and ready.local_url("::") == "http://127.0.0.1:1234"
    finally:
        proc.kill()
        proc.wait()


def test_wait_reports_an_exit_a_timeout_and_another_api_version(tmp_path):
    path = tmp_path / "ready.json"
    proc = _python("import sys; sys.exit(3)")
    with pytest.raises(ServerExited, match="exited with code 3") as err:
        wait_for_ready_file(path, proc, timeout=60)
    assert err.value.returncode == 3
    proc = _python("import time; time.sleep(30)")
    try:
        t = time.monotonic()
        with pytest.raises(ServerNotReady, match=r"not ready within 0.5 s .*none was written"):
            wait_for_ready_file(path, proc, timeout=0.5)
        assert time.monotonic() - t < 5
        _ready(path, pid=os.getpid())
        with pytest.raises(ServerNotReady, match=f"another process \\(pid {os.getpid()}"):
            wait_for_ready_file(path, proc, timeout=0.2)
        _ready(path, pid=proc.pid, api_version=2)
        with pytest.raises(ServerNotReady, match="API version 2"):
            wait_for_ready_file(path, proc, timeout=5)
        path.write_text("{}")
        with pytest.raises(ServerNotReady, match="is not a ready file"):
            wait_for_ready_file(path, proc, timeout=0.2)
    finally:
        proc.kill()
        proc.wait()
