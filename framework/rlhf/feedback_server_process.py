"""Running the human-feedback server (humanFeedback/feedback_server.py) as a subprocess, for
``--feedback-server-autostart`` and the tests: started by path, so the library never imports ``humanFeedback``.

    with start_feedback_server(port=0, data_dir="feedback_data", token="s3cret") as server:
        client = server.client("hopper-s1")     # an rlhf.feedback_client.FeedbackClient
        print(server.page_url)                  # the link to give labellers
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rlhf.feedback_client import FeedbackClient, FeedbackConnectionError, FeedbackServerError

SERVER_SCRIPT = Path(__file__).resolve().parents[2] / "humanFeedback" / "feedback_server.py"
TOKEN_ENV = "FEEDBACK_SERVER_TOKEN"


class FeedbackServerProcess:
    """A server started by :func:`start_feedback_server`; ``stop()`` (or leaving the ``with``) ends it."""

    def __init__(self, proc: subprocess.Popen, url: str, token: str | None, log_path: Path) -> None:
        self.proc, self.url, self.token, self.log_path = proc, url, token, log_path

    @property
    def page_url(self) -> str:
        """The link to give labellers (carries the token)."""
        return self.url + "/" + (f"?token={self.token}" if self.token else "")

    def client(self, run_id: str, **kw: Any) -> FeedbackClient:
        return FeedbackClient(self.url, run_id, token=self.token, **kw)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (clean shutdown: the WAL is checkpointed), then SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> FeedbackServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _log_tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def start_feedback_server(
    host: str = "127.0.0.1",
    port: int = 5001,
    data_dir: str | Path | None = None,
    token: str | None = None,
    lease_seconds: float | None = None,
    max_upload_mb: float | None = None,
    log_path: str | Path | None = None,
    startup_timeout: float = 30.0,
    python: str = sys.executable,
) -> FeedbackServerProcess:
    """Start ``humanFeedback/feedback_server.py`` as a subprocess and return once it answers HTTP.

    ``port=0`` picks a free port (read back from the server's "Open http://..." line). The token travels in the
    environment, not on the command line. Output goes to ``log_path`` (default ``<data_dir>/server.log``).
    The process is stopped at interpreter exit if the caller did not stop it.
    Raises RuntimeError with the log's tail if the server exits or does not answer within ``startup_timeout``.
    """
    if not SERVER_SCRIPT.is_file():
        raise FileNotFoundError(f"feedback server not found at {SERVER_SCRIPT}")
    data = Path(data_dir) if data_dir is not None else SERVER_SCRIPT.parent / "feedback_data"
    data.mkdir(parents=True, exist_ok=True)
    log = Path(log_path) if log_path is not None else data / "server.log"
    offset = log.stat().st_size if log.exists() else 0
    cmd = [python, str(SERVER_SCRIPT), "--host", host, "--port", str(port), "--data-dir", str(data)]
    if lease_seconds is not None:
        cmd += ["--lease-seconds", str(lease_seconds)]
    if max_upload_mb is not None:
        cmd += ["--max-upload-mb", str(max_upload_mb)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(TOKEN_ENV, None)
    if token:
        env[TOKEN_ENV] = token
    with open(log, "ab") as out:
        # Own session: a Ctrl-C in the trainer's terminal reaches the trainer, which then stops us cleanly.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server: FeedbackServerProcess | None = None
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"feedback server exited with code {proc.returncode}:\n{_log_tail(log)}")
        if server is None:
            with open(log, "rb") as f:
                f.seek(offset)
                m = re.search(rb"Open (http://\S+?)/(?:\?token=\S*)?\s", f.read())
            if m:
                url = m.group(1).decode()
                if host in ("0.0.0.0", "::"):  # the printed host is the machine's name; we are local
                    url = re.sub(r"//.*:(\d+)$", r"//127.0.0.1:\1", url)
                server = FeedbackServerProcess(proc, url, token, log)
        if server is not None:
            try:
                server.client("health", timeout=2.0, retries=0).health()
                atexit.register(server.stop)
                return server
            except (FeedbackConnectionError, FeedbackServerError):
                pass
        time.sleep(0.05)  # bounded start-up wait only
    proc.kill()
    proc.wait()
    raise RuntimeError(f"feedback server did not answer within {startup_timeout:.0f} s:\n{_log_tail(log)}")
