"""The lifecycle of one training run, the same for sac.py, sac_rlhf.py, ppo.py and pref_ppo.py.

In order, as a script uses it::

    run = Run(args, __file__)                 # logging, rendering backend, --resume's flags (the run's args.json)
    with run.checking_flags():                # ValueError -> ConfigError (exit 2); a run directory made here is removed
        ...                                   # validate, build environments and components
        device = run.torch_setup()            # threads, seeds, device
        rng_a, rng_b = run.generators("a", "b")
        run.register("agent", agent)          # every component that a checkpoint must hold, once, by name
        start = run.begin(eval_env, policy)   # run directory, tracker, restored checkpoint, progress bar
    with run:                                 # Ctrl-C / SIGTERM -> checkpoint, exit 130; teardown in any case
        for step in range(start, total):
            ...
            run.episode(episode_return, episode_length)
            if run.step_done(step + 1, metrics, boundary=...):   # logging, evaluation, checkpoints, progress
                break                                            # early stopping
    return run.result                         # the final evaluation, extra scalars, step and run_dir

Checkpoints: a resumable bundle (``checkpoints/resume``) at the first ``boundary`` after every
``--checkpoint-frequency`` steps, at the end and on an interrupt; the light ``checkpoints/final`` at the end and on
an interrupt. Both come from the :class:`rlhf.registry.CheckpointRegistry`. ``run.json`` (:mod:`rlhf.manifest`)
says what the run is and how it stands: written when it opens, at every checkpoint and when it ends.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rlhf.checkpoint import CheckpointError, restore_rng_state, rng_state, signals_deferred
from rlhf.cli import resumed_args
from rlhf.config import ConfigError
from rlhf.envs import make_env
from rlhf.evaluate import EarlyStopping, evaluate_policy
from rlhf.manifest import write_manifest
from rlhf.registry import CheckpointRegistry, Stateful
from rlhf.rendering import configure_headless_rendering
from rlhf.tracking import (
    LOG_FILE,
    EpisodeWindow,
    ProgressBar,
    Tracker,
    log_to_file,
    make_run_dir,
    recorded_args,
    run_name,
    seed_everything,
    select_device,
    setup_logging,
)
from rlhf.video import EvaluationRecorder

log = logging.getLogger("cleanrlhf")

# The evaluation environment is seeded apart from the training one (seed + 1), and the evaluation at step t runs
# episodes seeded seed + 10_000 + t + i: the same episodes for every run of a seed (comparable curves), never the
# training environment's.
EVAL_ENV_SEED_OFFSET = 1
EVAL_EPISODE_SEED_OFFSET = 10_000
EVAL_VIDEO_SIZE = 240  # pixels; software rendering of larger evaluation videos costs more than the episodes


def crossed(before: int, after: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (before, after] (PPO's steps advance a whole rollout at a time)."""
    return after // every > before // every


class Run:
    def __init__(self, args, script: str | Path, algorithm: str | None = None):
        configure_headless_rendering(args.render_mode)
        setup_logging(args.log_level)
        self.script = Path(script).stem
        self.resume_dir = Path(args.resume).resolve() if getattr(args, "resume", None) else None
        self.overrides: dict[str, Any] = {}
        if self.resume_dir is not None:
            try:
                args, self.overrides = resumed_args(args)
            except ValueError as e:
                raise ConfigError(str(e)) from e
        self.args = args
        self.algorithm = algorithm or self.script
        self.registry = CheckpointRegistry(self.algorithm, args.env_id)
        self.run_dir: Path | None = None
        self._made_dir = False
        self._closers: list[Callable[[], Any]] = []
        self._stop_log: Callable[[], None] = lambda: None
        self._final_scalars: list[Callable[[bool], dict[str, float]]] = []
        self._on_save: list[Callable[[], None]] = []
        self._generators: dict[str, np.random.Generator] = {}
        self.step = self.start_step = 0
        self.last_eval = float("nan")
        self.result: dict[str, Any] = {}
        self.early_stopping = EarlyStopping(args.early_stopping, args.early_stopping_step, args.early_stop_patience,
                                            args.early_stopping_mean, args.enable_greater_or_smaller_check)  # fmt: skip

    @property
    def resumed(self) -> bool:
        return self.resume_dir is not None

    # -- set-up ---------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def checking_flags(self):
        """Everything that can reject the flags runs in this block, so a bad flag leaves no run directory."""
        try:
            yield
        except ValueError as e:
            self._stop_log()  # the run ends here: its log file (in a directory that may go now) is closed
            if self._made_dir and self.run_dir is not None:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise ConfigError(str(e)) from e

    def torch_setup(self) -> torch.device:
        # --threads 0: the CPUs this process may run on (a cluster job's share, not the whole node's cores)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(self.args.threads or cpus)
        seed_everything(self.args.seed, self.args.torch_deterministic)
        return select_device(self.args.cuda)

    def generators(self, *names: str) -> list[np.random.Generator]:
        """Independent numpy generators from ``--seed`` (one per consumer), saved with every checkpoint."""
        gens = [np.random.default_rng(s) for s in np.random.SeedSequence(self.args.seed).spawn(len(names))]
        self._generators.update(zip(names, gens, strict=True))
        return gens

    def make_eval_env(self):
        """The evaluation environment (rendering frames for videos with --capture-video)."""
        args = self.args
        size = {"width": EVAL_VIDEO_SIZE, "height": EVAL_VIDEO_SIZE} if args.capture_video else {}
        return make_env(args.env_id, args.seed + EVAL_ENV_SEED_OFFSET, "rgb_array" if args.capture_video else None,
                        **size)  # fmt: skip

    def directory(self) -> Path:
        """The run directory: a new ``runs/{env}__{exp_name}__{seed}__{time}``, or the resumed run's own."""
        if self.run_dir is None:
            if self.resume_dir is not None:
                self.run_dir = self.resume_dir
            else:
                name = run_name(self.args.env_id, self.args.exp_name or self.script, self.args.seed)
                self.run_dir, self._made_dir = make_run_dir(self.args.runs_dir, name), True
        return self.run_dir

    def register(self, name: str, component, large: bool = False) -> None:
        """A component saved with every checkpoint and restored on --resume (``large``: its own file, resume only)."""
        self.registry.register(name, component, large)

    def close_at_end(self, *things) -> None:
        """Objects with ``close()`` (or callables), closed in reverse order when the run ends, however it ends."""
        self._closers += [t if callable(t) and not hasattr(t, "close") else t.close for t in things if t is not None]

    def final_scalars(self, fn: Callable[[bool], dict[str, float]]) -> None:
        """Scalars logged at the last step and returned in :attr:`result` (e.g. the feedback counts);
        ``fn(ended)``: whether the run ended (True) or was interrupted and may be resumed (False)."""
        self._final_scalars.append(fn)

    def on_save(self, fn: Callable[[], None]) -> None:
        """Called at every checkpoint (and at the end, and on an interrupt), just before the checkpoint is written:
        e.g. writing the run's preference dataset (rlhf.feedback_loop.keep_preferences), which a resumed run then
        cuts back to what its checkpoint holds, should the process die in between."""
        self._on_save.append(fn)

    def begin(self, eval_env, policy: Callable[[np.ndarray], np.ndarray], total_steps: int, start_step: int = 0) -> int:
        """Open the run: restore the checkpoint (with --resume), start tracking; return the step to start from."""
        args = self.args
        self.registry.register("run", Stateful(self._state_dict, self._load_state_dict))
        run_dir = self.directory()
        if args.log_file:
            self._stop_log = log_to_file(run_dir / LOG_FILE)
            self.close_at_end(self._stop_log)
        if self.resumed:
            try:
                start_step = self.registry.restore(run_dir / "checkpoints" / "resume", total_steps)
            except CheckpointError as e:
                raise ValueError(f"--resume {args.resume}: {e}") from e
            with open(run_dir / "resumes.jsonl", "a") as f:  # args.json stays the run's flags
                f.write(json.dumps({"time": time.time(), "step": start_step, "flags": self.overrides}) + "\n")
            log.info("resuming %s at step %d (flags given again: %s)", run_dir, start_step, self.overrides or "none")
        self.tracker = Tracker(run_dir, args, args.track, args.wandb_project_name, args.wandb_entity,
                               write_args=not self.resumed)  # fmt: skip
        self.close_at_end(self.tracker)
        video = None
        if args.capture_video:
            video = EvaluationRecorder(run_dir / "videos" / "eval", eval_env, self.tracker.eval_video)
        self._evaluate = functools.lru_cache(maxsize=1)(  # the final evaluation reuses one just run at that step
            lambda step: evaluate_policy(
                policy, eval_env, args.evaluation_episodes, args.seed + EVAL_EPISODE_SEED_OFFSET + step, step, video
            )  # fmt: skip
        )
        self.step = self.start_step = start_step
        every = args.checkpoint_frequency
        self.next_checkpoint = (start_step // every + 1) * every
        self.window = EpisodeWindow(start_step)
        self.bar = ProgressBar(total_steps, initial=start_step, disable=not args.progress_bar)
        self.close_at_end(self.bar)
        resumes = (run_dir / "resumes.jsonl").read_text().count("\n") if self.resumed else 0
        write_manifest(run_dir, algorithm=self.algorithm, env_id=args.env_id, seed=args.seed,
                       exp_name=args.exp_name or self.script, status="running", step=start_step,
                       total_timesteps=total_steps, resumes=resumes)  # fmt: skip
        log.info("run directory %s", run_dir)
        return start_step

    def _state_dict(self) -> dict:
        return {"rng": rng_state(self._generators), "early_stopping": vars(self.early_stopping).copy(),
                "last_eval": self.last_eval}  # fmt: skip

    def _load_state_dict(self, state: dict) -> None:
        restore_rng_state(state["rng"], self._generators)
        vars(self.early_stopping).update(state["early_stopping"])
        self.last_eval = float(state["last_eval"])

    # -- the loop -------------------------------------------------------------------------------------------------
    def log_scalars(self, values: dict[str, float], step: int) -> None:
        self.tracker.scalars(values, step)

    def episode(self, episode_return: float, length: int) -> None:
        self.window.episode(episode_return, length)

    def evaluate(self, step: int) -> dict[str, float]:
        return self._evaluate(step)

    def step_done(self, step: int, metrics: dict, boundary: bool = True, log_now: bool = False, **progress) -> bool:
        """The loop reached ``step``: log, evaluate, checkpoint (only at a ``boundary``, where the environment state
        is fully saved), update the progress bar. True when early stopping ends the run."""
        args, before = self.args, self.step
        self.step = step
        if log_now or crossed(before, step, args.log_frequency):
            self.tracker.scalars({**self.window.flush(step), **metrics}, step)
        stop = False
        if crossed(before, step, args.evaluation_frequency):
            eval_metrics = self.evaluate(step)
            self.last_eval = eval_metrics["eval/mean_return"]
            self.tracker.scalars(eval_metrics, step)
            stop = self.early_stopping.should_stop(step, self.last_eval)
            if stop:
                log.info("early stopping at step %d (eval return %.1f)", step, self.last_eval)
        if boundary and step >= self.next_checkpoint:
            self.save(final=False)
            self.next_checkpoint = (step // args.checkpoint_frequency + 1) * args.checkpoint_frequency
        self.bar.update(step - before, eval=self.last_eval, **progress)
        return stop

    def save(self, final: bool) -> None:
        """The resumable bundle and, with ``final``, the light final checkpoint; an interrupt waits until both are
        written (the previous bundle survives until the new one is complete: rlhf.checkpoint.save_bundle)."""
        checkpoints = self.directory() / "checkpoints"
        with signals_deferred():
            for fn in self._on_save:
                fn()
            self.registry.save_resume(checkpoints / "resume", self.step)
            if final:
                self.registry.save_final(checkpoints / "final", self.step, recorded_args(self.args))
            write_manifest(self.directory(), status="running", step=self.step)
        if final:
            log.info("checkpoint saved to %s", checkpoints)

    # -- the end --------------------------------------------------------------------------------------------------
    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        completed, interrupted = exc_type is None, exc_type is KeyboardInterrupt
        # run.json's status: "crashed" unless the end below goes through; an interrupt (a second Ctrl-C during
        # the final save included) is "interrupted": --resume continues from the last checkpoint written
        status = "interrupted" if interrupted else "crashed"
        try:
            self.bar.close()
            if interrupted:
                log.warning("interrupted at step %d; saving a checkpoint", self.step)
            if completed:
                final = self.evaluate(self.step)
                self.tracker.scalars(final, self.step)
                self.result.update(final)
            if completed or interrupted:
                self.save(final=True)
                status = "finished" if completed else "interrupted"
            extra = {k: v for fn in self._final_scalars for k, v in fn(completed).items()}
            self.tracker.scalars(extra, self.step)
            self.result.update({**extra, "step": float(self.step), "run_dir": str(self.run_dir)})
        except KeyboardInterrupt:
            status = "interrupted" if status == "crashed" else status
            raise
        finally:
            with contextlib.suppress(OSError):  # a full disk must not hide the exception that ended the run
                write_manifest(self.directory(), status=status, step=self.step)
            for close in reversed(self._closers):
                close()
        return False  # an interrupt or a crash goes on to the CLI (exit 130 or 1)
