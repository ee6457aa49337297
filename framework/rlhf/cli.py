"""Running an algorithm script: parsing its flags, exit statuses, signals, and ``--resume``'s flags."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import threading
import types
import typing
from pathlib import Path

import tyro

from rlhf.config import ConfigError
from rlhf.tracking import SECRET_FLAGS

# The flags a resumed run may take from the command line: they change how fast or how verbosely it runs, not what
# it computes (issue 9, item 10). Every other flag is the run's own, from its args.json.
RESUME_MAY_CHANGE = ("progress_bar", "log_level", "threads", "log_file")


def resumed_args(args):
    """(the run's flags from ``<--resume>/args.json`` with those of :data:`RESUME_MAY_CHANGE` given now, the
    changed ones). ValueError, naming the file or the flag, for a directory that is not a run, a damaged
    args.json, or another flag given with --resume."""
    path = Path(args.resume) / "args.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--resume {args.resume}: not a run directory with a readable args.json ({e})") from e
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: not a JSON object of flags")
    hints = typing.get_type_hints(type(args))
    fields = {f.name for f in dataclasses.fields(args)}
    for name, value in saved.items():
        if name not in fields:
            raise ValueError(f"{path}: {name!r} is not a flag of this script")
        if not _fits(value, hints[name]):
            raise ValueError(f"{path}: {name} = {value!r} is not a valid --{name.replace('_', '-')}")
    defaults = type(args)()
    given = [
        f"--{k.replace('_', '-')}"
        for k in sorted(fields - set(RESUME_MAY_CHANGE) - set(SECRET_FLAGS) - {"resume"})
        if getattr(args, k) != getattr(defaults, k) and (k not in saved or getattr(args, k) != saved[k])
    ]
    if given:
        raise ValueError(
            f"--resume continues the run with its own flags; {', '.join(given)} cannot be changed "
            f"(only --threads, --progress-bar/--no-progress-bar, --log-level and --log-file/--no-log-file can)"
        )
    merged = {**saved, "resume": args.resume}
    merged |= {k: getattr(args, k) for k in SECRET_FLAGS if k in fields}  # not in args.json: from this call
    changed = {k: getattr(args, k) for k in RESUME_MAY_CHANGE if k in fields and getattr(args, k) != saved.get(k)}
    merged |= changed
    return type(args)(**merged), changed


def _fits(value, hint) -> bool:
    """Whether a JSON value is a valid value of a flag annotated ``hint`` (int, float, bool, str, Literal, X | None)."""
    origin, options = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return value in options
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in options)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True  # a type this check does not know: the script's own validation sees it


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
        if argv is None and threading.current_thread() is threading.main_thread():
            # The checkpoint is written. A second Ctrl-C while the interpreter shuts down would kill the process by
            # the signal (finalisation resets Python's handlers to SIG_DFL, but leaves SIG_IGN): exit 130 all the
            # same. Only as the process's command line: a caller in-process keeps its own handlers.
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
        return 130
    return 0
