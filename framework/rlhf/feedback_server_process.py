"""Running the human-feedback server (humanFeedback/feedback_server.py) as a subprocess, for
``--feedback-server-autostart`` and the tests: started by path, so the library never imports ``humanFeedback``.

    with start_feedback_server(port=0, data_dir="feedback_data", token="s3cret") as server:
        client = server.client("hopper-s1")     # an rlhf.feedback_client.FeedbackClient
        print(server.page_url)                  # the link to give labellers
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rlhf.feedback_client import FeedbackClient, FeedbackConnectionError, FeedbackServerError
from rlhf.server_ready import ServerExited, ServerNotReady, read_ready_file, wait_for_ready_file

SERVER_SCRIPT = Path(__file__).resolve().parents[2] / "humanFeedback" / "feedback_server.py"
TOKEN_ENV = "FEEDBACK_SERVER_TOKEN"
# Written next to the server's data when we start it: the server survives a crashed trainer (its own session, so
# labellers keep going), and a resumed run finds it here to adopt or stop it (issue 9, item 2).
RECORD = "autostarted_server.json"
READY_FILE = "server_ready.json"  # the server's ready signal (rlhf.server_ready); it removes the file on a clean stop

log = logging.getLogger("cleanrlhf")


class FeedbackServerStartError(RuntimeError):
    """The server could not be started; the message is one line (the server's own ``error:`` line if it gave one)."""


class FeedbackServerProcess:
    """A server started by :func:`start_feedback_server` (``proc`` is its Popen), or one a crashed run started and
    a resumed run adopted (``proc`` None: not our child, known by ``pid``); ``stop()`` (or leaving the ``with``)
    ends it."""

    def __init__(
        self,
        proc: subprocess.Popen | None,
        url: str,
        token: str | None,
        log_path: Path,
        pid: int | None = None,
        record: Path | None = None,
    ) -> None:
        self.proc, self.url, self.token, self.log_path = proc, url, token, log_path
        self.pid = proc.pid if proc is not None else pid
        self.record = record

    @property
    def page_url(self) -> str:
        """The link to give labellers (carries the token)."""
        return self.url + "/" + (f"?token={self.token}" if self.token else "")

    def client(self, run_id: str, **kw: Any) -> FeedbackClient:
        return FeedbackClient(self.url, run_id, token=self.token, **kw)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (clean shutdown: the WAL is checkpointed), then SIGKILL after ``timeout``. Returns the exit code
        (None for an adopted server, whose exit status goes to its own parent)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
        else:
            code = None
            if self.pid is not None and _alive(self.pid):
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while _alive(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)  # not our child: nothing to wait() on; a bounded shutdown wait
                if _alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
        if self.record is not None:
            _remove_record(self.record, self.pid)
        return code

    def __enter__(self) -> FeedbackServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust the signal
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_our_server(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is feedback_server.py serving ``data_dir`` (a recorded pid may have been reused since)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc to check with (not Linux): the pid is alive and recorded for this data dir
    if str(SERVER_SCRIPT) not in argv or "--data-dir" not in argv:
        return False
    given = argv[argv.index("--data-dir") + 1] if argv.index("--data-dir") + 1 < len(argv) else ""
    return Path(given).resolve() == data_dir.resolve()


def _remove_record(record: Path, pid: int | None) -> None:
    try:
        if json.loads(record.read_text()).get("pid") == pid:
            record.unlink()
    except (OSError, ValueError):
        pass


def running_server(data_dir: str | Path, token: str | None = None) -> FeedbackServerProcess | None:
    """The server that :func:`start_feedback_server` started on ``data_dir`` and that still runs (its trainer may
    have died), or None. It is not checked to answer: see :func:`adopt_or_start_feedback_server`."""
    data = Path(data_dir)
    record = data / RECORD
    try:
        info = json.loads(record.read_text())
        pid, url = int(info["pid"]), str(info["url"] or "")  # no url: its trainer died while it started
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (_alive(pid) and _is_our_server(pid, data)):
        return None
    return FeedbackServerProcess(None, url, token, data / "server.log", pid=pid, record=record)


def adopt_or_start_feedback_server(
    host: str, port: int, data_dir: str | Path, token: str | None = None, **kw: Any
) -> FeedbackServerProcess:
    """The live server a crashed run left on ``data_dir`` if it serves ``port`` and accepts ``token`` (labellers
    keep their page and their lease); otherwise that one is stopped cleanly and a new one started. Raises
    :class:`FeedbackServerStartError` as :func:`start_feedback_server` does."""
    old = running_server(data_dir, token)
    if old is not None:
        reason = ""
        if not old.url:
            reason = "its address was never recorded"
        elif port and not old.url.endswith(f":{port}"):
            reason = f"it serves {old.url}, not port {port}"
        else:
            try:
                old.client("health", timeout=2.0, retries=2).health()
            except FeedbackServerError as e:
                reason = f"it refuses this run's token ({e.status} {e.error})" if e.status == 401 else str(e)
            except FeedbackConnectionError:
                reason = f"it does not answer at {old.url}"
        if not reason:
            log.warning(
                "the labelling server started before this run was interrupted still runs: using it (pid %d)", old.pid
            )
            atexit.register(old.stop)
            return old
        log.warning("stopping the labelling server the interrupted run left (pid %d): %s", old.pid, reason)
        old.stop()
    return start_feedback_server(host=host, port=port, data_dir=data_dir, token=token, **kw)


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

    The server is found ready by the file it writes (``--ready-file <data_dir>/server_ready.json``, see
    :mod:`rlhf.server_ready`), which also gives the port that ``port=0`` picked. The token travels in the
    environment, not on the command line. Output goes to ``log_path`` (default ``<data_dir>/server.log``).
    The process is stopped at interpreter exit if the caller did not stop it.
    Raises :class:`FeedbackServerStartError` (one line: the server's error, e.g. its port is in use) if the server
    exits or is not ready within ``startup_timeout``; a data directory this call created is then removed.
    """
    if not SERVER_SCRIPT.is_file():
        raise FileNotFoundError(f"feedback server not found at {SERVER_SCRIPT}")
    data = Path(data_dir) if data_dir is not None else SERVER_SCRIPT.parent / "feedback_data"
    created = not data.exists()  # removed again if the server does not start: a failed start leaves nothing
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FeedbackServerStartError(f"cannot create the data directory {data}: {e.strerror or e}") from e
    log_file = Path(log_path) if log_path is not None else data / "server.log"
    offset = log_file.stat().st_size if log_file.exists() else 0
    ready_file = data.absolute() / READY_FILE
    _remove_stale_ready_file(ready_file)
    cmd = [python, str(SERVER_SCRIPT), "--host", host, "--port", str(port), "--data-dir", str(data)]
    cmd += ["--ready-file", str(ready_file)]
    if lease_seconds is not None:
        cmd += ["--lease-seconds", str(lease_seconds)]
    if max_upload_mb is not None:
        cmd += ["--max-upload-mb", str(max_upload_mb)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(TOKEN_ENV, None)
    if token:
        env[TOKEN_ENV] = token  # the environment, not the command line, which every user of the machine can read
    record = data / RECORD
    with open(log_file, "ab") as out:
        # Own session: a Ctrl-C in the trainer's terminal reaches the trainer, which then stops us cleanly.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _write_record(record, proc.pid, None)

    def fail(message: str) -> FeedbackServerStartError:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if created:
            shutil.rmtree(data, ignore_errors=True)
        else:
            _remove_record(record, proc.pid)
        return FeedbackServerStartError(message)

    try:
        ready = wait_for_ready_file(ready_file, proc, timeout=startup_timeout)
    except ServerExited as e:
        raise fail(f"{e}: {_error_line(log_file, offset)}") from None
    except ServerNotReady as e:
        raise fail(f"{e} (log: {log_file})") from None
    server = FeedbackServerProcess(proc, ready.local_url(host), token, log_file, record=record)
    _write_record(record, proc.pid, server.url)
    try:
        # Ready means serving; one request still checks the address we derived from the file and our token.
        server.client("health", timeout=5.0, retries=3).health()
    except (FeedbackConnectionError, FeedbackServerError) as e:
        raise fail(f"the feedback server is ready but does not answer at {server.url}: {e}") from None
    atexit.register(server.stop)
    return server


def _remove_stale_ready_file(path: Path) -> None:
    """A killed server (no clean stop) leaves its ready file: remove it, as its pid may be reused by the next one."""
    try:
        if not _alive(read_ready_file(path).pid):
            path.unlink()
    except (OSError, ValueError):
        pass  # none, or not a ready file: the new server replaces it, and its pid tells them apart


def _write_record(record: Path, pid: int, url: str | None) -> None:
    """By rename: a resumed run that reads it while it is written sees the old or the new one, never half."""
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "url": url}))
    tmp.replace(record)


def _error_line(path: Path, offset: int) -> str:
    """The server's own ``error: ...`` line(s) since ``offset``, else the last line of its output: one line, for a
    message that is printed instead of a traceback."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error:")]
    return "; ".join(errors) if errors else (lines[-1] if lines else "(no output)")
