"""The documented command: starts from the repo root, binds 127.0.0.1, answers; bad flags exit 2 with a message."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from .toolbox_testutil import REPO_ROOT, ToolboxServer


def test_starts_from_the_repo_root_on_loopback(runs_root):
    server = ToolboxServer(runs_root)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "/api/runs", timeout=10) as r:
            runs = json.load(r)["runs"]
        assert len(runs) == 4
        with urllib.request.urlopen(server.url + "/", timeout=10) as r:
            assert b"CleanRLHF toolbox" in r.read()
    finally:
        server.close()


def test_bad_flags(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "toolbox/toolbox.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )

    missing = run("--runs-dir", str(tmp_path / "absent"))
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    assert run("--port", "70000", "--runs-dir", str(tmp_path)).returncode == 2
    help_text = run("-h")
    assert help_text.returncode == 0 and "--runs-dir" in help_text.stdout and "127.0.0.1" in help_text.stdout


def _toolbox(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "toolbox/toolbox.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_bad_flags_and_a_busy_port_are_one_line_and_exit_2(tmp_path):
    """Issue 9, item 4: no usage dump, no traceback; the port in use used to be an OSError traceback."""
    (tmp_path / "file").write_text("x")
    cases = [
        (("--runs-dir", str(tmp_path / "file")), "not a directory"),
        (("--runs-dir", str(tmp_path / "file" / "runs")), "no such directory"),
        (("--runs-dir", str(tmp_path), "--port", "-1"), "--port"),
        (("--runs-dir", str(tmp_path), "--port", "nan"), "--port"),
        (("--runs-dir", str(tmp_path), "--threads", "0"), "--threads"),
        (("--runs-dir", str(tmp_path), "--threads", "100000"), "--threads"),
    ]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cases.append((("--runs-dir", str(tmp_path), "--port", str(s.getsockname()[1])), "already in use"))
        for args, expected in cases:
            p = _toolbox(*args)
            assert p.returncode == 2, (args, p.stderr)
            assert p.stderr.count("\n") == 1 and expected in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["file"]


def test_demo_out_that_cannot_be_written_is_one_line(tmp_path, capsys):
    import toolbox_demo  # in-process: its refusals come before any video is made

    (tmp_path / "file").write_text("x")
    assert toolbox_demo.main(["--out", str(tmp_path / "file" / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create" in err, err
    (tmp_path / "runs" / "Hopper-v5__sac_rlhf__1__1760000000").mkdir(parents=True)  # as a first demo left it
    assert toolbox_demo.main(["--out", str(tmp_path / "runs")]) == 2  # the demo twice: said, not a traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds" in err, err
