"""CleanRLHF toolbox: compare runs in a browser (learning curves, evaluation videos, queried clips and labels).

    uv run python toolbox/toolbox.py --runs-dir runs --port 6007     # then open http://127.0.0.1:6007

Serves the page and its JSON endpoints (toolbox/README.md) with waitress, bound to 127.0.0.1 only: the toolbox has
no login, so reach it from another machine through an SSH tunnel (ssh -L 6007:127.0.0.1:6007 host).
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
HOST = "127.0.0.1"
MAX_THREADS = 256


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and exit code 2 (argparse would print the whole usage first)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs-dir",
        default=str(REPO_ROOT / "runs"),
        help="directory whose subdirectories are runs (default: the repository's runs/)",
    )
    parser.add_argument("--port", type=int, default=6007, help="port on 127.0.0.1 (0: any free port) (default: 6007)")
    parser.add_argument("--threads", type=int, default=8, help=f"waitress worker threads, 1-{MAX_THREADS} (default: 8)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in [0, 65535], got {args.port}")
    if not 1 <= args.threads <= MAX_THREADS:
        parser.error(f"--threads must be in [1, {MAX_THREADS}], got {args.threads}")
    runs_dir = Path(args.runs_dir).expanduser()
    if not runs_dir.is_dir():
        what = "is not a directory" if runs_dir.exists() else "no such directory"
        parser.error(f"--runs-dir {args.runs_dir}: {what}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from toolbox_app import create_app
    from waitress import create_server

    app = create_app(args.runs_dir)
    try:
        server = create_server(app, host=HOST, port=args.port, threads=args.threads)
    except OSError as e:
        reason = "the port is already in use" if e.errno == errno.EADDRINUSE else str(e)
        print(f"error: cannot listen on {HOST}:{args.port}: {reason}", file=sys.stderr)
        return 2
    print(f"CleanRLHF toolbox: runs in {app.config['RUNS_DIR']}", flush=True)
    print(f"serving on http://{HOST}:{server.effective_port}", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
