"""Run directories, seeding, TensorBoard (+ optional W&B) scalars and the progress bar."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]

log = logging.getLogger("cleanrlhf")

# Flags whose values are secrets: never written to a run's files (args.json, checkpoints, TensorBoard, W&B), which
# are shared and uploaded (issue 9, item 5). A resumed run takes them from its own command line or environment.
SECRET_FLAGS = ("feedback_server_token",)
REDACTED = "<redacted>"


def recorded_args(args) -> dict:
    """The run's flags as every writer records them: a dict of ``args`` with secret values replaced by
    ``"<redacted>"`` (an unset secret stays None, so a reader still sees whether one was used)."""
    is_instance = dataclasses.is_dataclass(args) and not isinstance(args, type)
    config = dataclasses.asdict(args) if is_instance else dict(vars(args))
    for name in SECRET_FLAGS:
        if config.get(name):
            config[name] = REDACTED
    return config


def redacted_argv(argv: list[str]) -> list[str]:
    """``argv`` with the values of secret flags (``--flag value`` and ``--flag=value``, ``-`` or ``_``) replaced."""
    flags = {f"--{n.replace('_', sep)}" for n in SECRET_FLAGS for sep in "-_"}
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif arg in flags:
            out.append(arg)
            hide_next = True
        elif arg.split("=", 1)[0] in flags and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=" + REDACTED)
        else:
            out.append(arg)
    return out


LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_FILE = "log.log"  # the original CleanRLHF's name for it (its --log-file), so its users find it where they look


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), format=LOG_FORMAT)


def log_to_file(path: Path) -> Callable[[], None]:
    """Copy every log record at the configured level to ``path`` too (appending, as a resumed run does); returns
    the function that stops it and closes the file (the run calls it at its end, so runs in one process, such as
    the tests', each log to their own file)."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)

    def stop() -> None:
        root.removeHandler(handler)
        handler.close()

    return stop


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic


def select_device(use_cuda: bool) -> torch.device:
    return torch.device("cuda" if use_cuda and torch.cuda.is_available() else "cpu")


def run_name(env_id: str, exp_name: str, seed: int) -> str:
    """``{env}__{exp_name}__{seed}__{unix_time}`` with characters other than letters, digits, ``_ . -`` replaced:
    the name is a directory, a W&B run name and the run's id on the labelling server, which accepts only those."""
    safe = lambda text: re.sub(r"[^A-Za-z0-9_.-]+", "-", text)  # noqa: E731
    return f"{safe(env_id)}__{safe(exp_name)}__{seed}__{int(time.time())}"


def make_run_dir(runs_dir: str, name: str) -> Path:
    """Create ``<runs_dir>/<name>``. A directory that cannot be created (a path under a regular file, no
    permission) is a :class:`~rlhf.config.ConfigError` naming ``--runs-dir``, so the CLI prints one line and exits 2
    instead of a traceback (issue 9, item 4); nothing is created then."""
    from rlhf.config import ConfigError

    root = Path(runs_dir).expanduser().resolve() if runs_dir else REPO_ROOT / "runs"
    path = root / name
    try:
        path.mkdir(parents=True, exist_ok=False)
    except OSError as e:
        raise ConfigError(f"--runs-dir {runs_dir or root}: cannot create {path}: {e.strerror or e}") from e
    return path


class Tracker:
    """Scalars to TensorBoard (and W&B with --track); ``args.json`` in the run directory. Every record of the flags
    (args.json, the TensorBoard hyperparameter text, the W&B config) is :func:`recorded_args`: no secrets."""

    def __init__(
        self,
        run_dir: Path,
        args,
        track: bool = False,
        project: str = "",
        entity: str | None = None,
        write_args: bool = True,
    ):
        """``write_args``: False for a resumed run, whose args.json stays the flags it was started with."""
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        config = recorded_args(args)
        if write_args:
            (run_dir / "args.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        self.wandb = None
        if track:
            import wandb

            # Scalars go to W&B by wandb.log below, not by sync_tensorboard: that syncer watches the TensorBoard
            # logdir recursively, and W&B's own directory is inside it (<run>/wandb/), so every event file it copied
            # into the W&B run was seen and copied again, one level deeper each time: a self-nesting tree of links
            # that TensorBoard then listed as extra runs (issue 9, item 8).
            argv, sys.argv = sys.argv, redacted_argv(sys.argv)  # W&B records the command line in its metadata
            try:
                # "" (the original CleanRLHF's scripts pass --wandb_entity "") means W&B's default, like None
                self.wandb = wandb.init(
                    project=project or None,
                    entity=entity or None,
                    config=config,
                    name=run_dir.name,
                    dir=str(run_dir),
                    save_code=False,
                )
            finally:
                sys.argv = argv
            # One x-axis for every key, as TensorBoard's step: our keys are logged at steps that are not always
            # increasing per call (a session's metrics, then the window's), which wandb.log(step=) would drop.
            self.wandb.define_metric("global_step")
            self.wandb.define_metric("*", step_metric="global_step")
        self.writer = SummaryWriter(str(run_dir))
        self.writer.add_text(
            "hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in sorted(config.items()))
        )

    def scalars(self, values: Mapping[str, float | torch.Tensor], step: int) -> None:
        finite = {}
        for key, value in values.items():
            value = float(value)
            if math.isfinite(value):
                self.writer.add_scalar(key, value, step)
                finite[key] = value
        if self.wandb is not None and finite:
            self.wandb.log({**finite, "global_step": step})

    def eval_video(self, path: Path, step: int) -> None:
        """An evaluation mp4 already on disk, to W&B (TensorBoard has no video type; the file stays in the run)."""
        if self.wandb is not None:
            import wandb

            self.wandb.log({"videos/eval": wandb.Video(str(path), format="mp4"), "global_step": step})

    def close(self) -> None:
        self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


class ProgressBar:
    """tqdm bar with steps, steps/s, labels so far and the last evaluation return."""

    def __init__(self, total: int, initial: int = 0, disable: bool = False):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            disable=disable,
            mininterval=1.0,
            smoothing=0.05,
        )
        self.fields: dict[str, str] = {}

    def update(self, n: int = 1, **fields) -> None:
        if fields:
            self.fields.update({k: (f"{v:.1f}" if isinstance(v, float) else str(v)) for k, v in fields.items()})
            self.bar.set_postfix(self.fields, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class EpisodeWindow:
    """Episodes finished and steps taken since the last log line, turned into ``charts/*`` scalars."""

    def __init__(self, step: int):
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.start_step, self.start_time = step, time.time()

    def episode(self, episode_return: float, length: int) -> None:
        self.returns.append(episode_return)
        self.lengths.append(length)

    def flush(self, step: int) -> dict[str, float]:
        now = time.time()
        scalars = {"charts/SPS": (step - self.start_step) / max(now - self.start_time, 1e-9)}
        if self.returns:
            scalars["charts/episodic_return"] = float(np.mean(self.returns))
            scalars["charts/episodic_length"] = float(np.mean(self.lengths))
        self.returns, self.lengths = [], []
        self.start_step, self.start_time = step, now
        return scalars
