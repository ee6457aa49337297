"""Waiting for the labelling server's ready signal: the JSON file ``humanFeedback/feedback_server.py --ready-file PATH``
writes (by rename) once it serves, ``{"url", "port", "pid", "data_dir", "api_version"}`` (issue 8, item 5: the
"Open http://..." line it prints is for people, and its wording may change).

    proc = subprocess.Popen([sys.executable, "humanFeedback/feedback_server.py", "--port", "0", "--ready-file", p])
    ready = wait_for_ready_file(p, proc, timeout=30)    # raises ServerExited / ServerNotReady
    ready.local_url("127.0.0.1")                        # "http://127.0.0.1:40123"

Standard library only, and here rather than in ``humanFeedback/``: the library starts the server by path and never
imports it, while the server's own tools (feedback_bench.py, feedback_screenshot.py) and the tests are clients
like the trainer and may import this one module; the server itself imports nothing from ``framework/``.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

API_VERSION = 1  # the HTTP API this library speaks (humanFeedback/openapi.yaml)
# A server bound to every interface prints (and writes) the machine's name, for people on other machines; a client on
# this machine reaches it on loopback, which needs no name lookup and no firewall.
WILDCARD_HOSTS = ("0.0.0.0", "::")
_POLL_S = 0.02  # a start-up wait only: the server takes about a second to import Flask and open its store


class ServerNotReady(RuntimeError):
    """No usable ready file within the timeout (the message says why in one line)."""


class ServerExited(ServerNotReady):
    """The server exited before it was ready; ``returncode`` is its exit code (its ``error:`` line is in its log)."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"the feedback server exited with code {returncode}")
        self.returncode = returncode


@dataclass(frozen=True)
class ServerReady:
    """What a ready file says. ``url`` is the server's base address as it shows it, without a trailing slash."""

    url: str
    port: int
    pid: int
    data_dir: str
    api_version: int

    def local_url(self, bind_host: str) -> str:
        """The address a client on this machine uses: loopback for a server bound to every interface."""
        return f"http://127.0.0.1:{self.port}" if bind_host in WILDCARD_HOSTS else self.url.rstrip("/")


def read_ready_file(path: str | Path) -> ServerReady:
    """The ready file at ``path``. Raises FileNotFoundError while there is none, ValueError if it is not one."""
    info = json.loads(Path(path).read_text())
    try:
        ready = ServerReady(
            url=str(info["url"]),
            port=int(info["port"]),
            pid=int(info["pid"]),
            data_dir=str(info["data_dir"]),
            api_version=int(info["api_version"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a ready file ({type(e).__name__}: {e})") from None
    if not ready.url.startswith("http://"):
        raise ValueError(f"{path} is not a ready file (url {ready.url!r})")
    return ready


def wait_for_ready_file(path: str | Path, proc: subprocess.Popen, timeout: float) -> ServerReady:
    """Wait until the server ``proc`` (started with ``--ready-file path``) has written its ready file, and return it.

    A file whose ``pid`` is not ``proc``'s is left alone: a server that was killed (no clean stop, so its file stayed)
    or another server on the same path wrote it. Raises :class:`ServerExited` if ``proc`` exits first, and
    :class:`ServerNotReady` after ``timeout`` seconds or for a server that speaks another API version.
    """
    deadline = time.monotonic() + timeout
    problem = "none was written"
    while True:
        code = proc.poll()
        if code is not None:
            raise ServerExited(code)
        try:
            ready = read_ready_file(path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:  # never from our server (it renames a whole file into place)
            problem = str(e)
        else:
            if ready.pid != proc.pid:
                problem = f"the one there is from another process (pid {ready.pid}, not {proc.pid})"
            elif ready.api_version != API_VERSION:
                raise ServerNotReady(
                    f"the feedback server speaks API version {ready.api_version}, this trainer {API_VERSION}"
                )
            else:
                return ready
        if time.monotonic() >= deadline:
            raise ServerNotReady(f"the feedback server was not ready within {timeout:g} s ({path}: {problem})")
        time.sleep(_POLL_S)
