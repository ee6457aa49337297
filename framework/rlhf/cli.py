"""Running an algorithm script: parsing its flags, exit statuses, signals, and ``--resume``'s flags."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import threading
from pathlib import Path

import tyro

from rlhf.config import ConfigError
from rlhf.tracking import SECRET_FLAGS


def resumed_args(args, keep: tuple[str, ...] = ("resume", "progress_bar", "log_level", "threads")):
    """The flags a run was started with (its args.json), for ``--resume RUN_DIR``; ``keep`` come from this call.

    Raises ValueError when the directory is not a run, and logs which other given flags are ignored."""

    path = Path(args.resume) / "args.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--resume {args.resume}: not a run directory with a readable args.json ({e})") from e
    known = {f.name for f in dataclasses.fields(args)}
    keep = (*keep, *(k for k in SECRET_FLAGS if k in known))  # secrets are not in args.json: from this call
    merged = {k: v for k, v in saved.items() if k in known} | {k: getattr(args, k) for k in keep}
    defaults = type(args)()
    ignored = [
        k for k in known - set(keep) if getattr(args, k) != getattr(defaults, k) and getattr(args, k) != merged.get(k)
    ]
    if ignored:
        logging.getLogger("cleanrlhf").warning("--resume uses the run's own flags; ignoring %s", sorted(ignored))
    return type(args)(**merged)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_cli(args_type, main, argv: list[str] | None = None) -> int:
    """Parse the flags into ``args_type`` and run ``main``: exit status 2 with a one-line message for bad flags
    (:class:`ConfigError`), 130 after Ctrl-C or SIGTERM (which save a checkpoint first), 1 with a traceback for a
    crash."""
    args = tyro.cli(args_type, args=argv)
    if threading.current_thread() is threading.main_thread():
        # A cluster's scheduler (SLURM) stops jobs with SIGTERM: treat it like Ctrl-C, which saves a checkpoint.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        main(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
