"""The feedback loop of PEBBLE and PrefPPO, one for both: the schedule, asking the teacher, waiting for and polling
its answers, storing the labels with their segments' data, training the reward ensemble (with SURF as an explicit
collaborator), recording the queried clips, and the feedback metrics.

What differs per algorithm is passed in explicitly (:class:`AgentData`): how queries are drawn from the agent's
own buffer, its newest transitions (for the metrics), and what to do after a reward update (relabel the replay
buffer and reset the critics; reset the reward scaler). Everything the loop owns is in its ``state_dict``.

Metrics, one meaning each (logged at every reward update, at the step of the update):

- ``feedback/total_labels``, ``feedback/skipped``, ``feedback/equal``: labels stored, queries skipped, labels 0.5,
  over the whole run; ``feedback/sessions``: sessions whose answers were learned from.
- ``feedback/wait_seconds``: wall-clock seconds the training loop spent fetching or waiting for answers since the
  previous reward update (the time training stood still for feedback).
- ``feedback/session_seconds``: wall-clock seconds of this update: storing the labels, training the ensemble,
  relabelling the agent's data, computing these metrics.
- ``feedback/clip_render_seconds``: mean seconds to render one clip for people (human teacher only), so far.
- ``feedback/labeller/<name>/{answers,median_answer_seconds,agreement,self_consistency,flip_rate}`` (and ``_n``
  of the rates), ``feedback/labellers``, ``feedback/labellers_excluded``: the labelling server's per-labeller
  statistics of the run (human teacher only; rlhf.labeller_quality).
- ``reward_model/{train,val}_{loss,accuracy}``, ``reward_model/epochs``: of the ensemble-mean logit on the kept
  labels, after training (rlhf.reward_training).
- ``reward_model/pearson``: Pearson correlation between the ensemble-mean r̂ and the reward the teacher judges by
  over the agent's newest :data:`METRIC_TRANSITIONS` transitions, right after the update: the environment's true
  reward, or a behaviour teacher's criterion (``--teacher-sim-reward``; scored over those transitions as
  segments in time order, which may cross episode boundaries); ``reward_model/ensemble_std``: the mean over the
  same transitions of the std of r̂ across members.
- ``reward_model/surf_confident_fraction``: fraction of SURF's unlabelled pairs that got a pseudo-label.
- ``feedback/loaded_labels``: labels loaded from preference datasets (``--preferences-load``) among those trained on.

The labels the run's teacher gives are kept as a preference dataset (rlhf.pref_dataset) with who gave them and
when: :func:`keep_preferences` writes it to the run directory at every checkpoint and at the end. Labels loaded
with ``--preferences-load`` train the reward ensemble once, at the step of the first session, before it is asked
(so query selection already uses them); they are not asked again, do not count towards
``--teacher-feedback-total-queries`` or ``feedback/total_labels``, and are not written into the run's dataset
(they are in their own files).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from rlhf.checkpoint import signals_deferred
from rlhf.feedback import Answers, FeedbackStats, Teacher, pearson, query_id
from rlhf.pref_dataset import RUN_FILE, DatasetError, LabelledPairs, check_fits, empty, read, write
from rlhf.preferences import LOADED_SESSION, PreferenceDataset
from rlhf.queries import Strategy
from rlhf.registry import expect
from rlhf.reward_model import RewardEnsemble, predict_rewards
from rlhf.reward_training import RewardTrainingConfig, train_reward_ensemble
from rlhf.segments import Segments
from rlhf.surf import Surf

log = logging.getLogger("cleanrlhf")

# Answers are polled every this many environment steps while training goes on (people answer at any time; a poll
# is one HTTP round trip, ~1 ms, so 100 steps keep it under 1 % of SAC's step time).
POLL_EVERY_STEPS = 100
# The newest transitions that reward_model/pearson and reward_model/ensemble_std are computed over.
METRIC_TRANSITIONS = 10_000


class AgentData(Protocol):
    """The algorithm's side of the loop."""

    def select(
        self, n: int, candidates: int, length: int, strategy: Strategy, rng: np.random.Generator
    ) -> tuple[Segments, Segments]:
        """(segments A, segments B): n pairs chosen by ``strategy`` among ``candidates`` drawn from the buffer."""

    def newest(self, n: int) -> Segments:
        """The newest k <= n transitions, as segments (N, k / N) that may cross episode boundaries (all valid)."""

    def reward_updated(self, updates: int) -> None:
        """The ensemble has just been trained (``updates`` times so far): relabel, reset what fit the old reward."""


@dataclass
class SessionConfig:
    num_queries: int
    pool_multiplier: int
    segment_length: int
    strategy: Strategy
    val_split: float
    keep_sessions: int | None  # None: keep every label
    training: RewardTrainingConfig
    wait: bool  # hold training at each session until it is answered
    timeout: float  # seconds to wait per session (0: no limit)

    @classmethod
    def from_args(cls, args) -> SessionConfig:
        """From the shared feedback flags (rlhf.config.FeedbackArgs)."""
        return cls(
            num_queries=args.teacher_feedback_num_queries_per_session,
            pool_multiplier=args.query_pool_multiplier,
            segment_length=args.trajectory_length,
            strategy=args.preference_sampling,
            val_split=args.reward_net_val_split,
            keep_sessions=args.keep_sessions(),
            training=RewardTrainingConfig.from_args(args),
            wait=args.feedback_wait,
            timeout=args.feedback_timeout,
        )


class FeedbackLoop:
    def __init__(
        self,
        cfg: SessionConfig,
        sessions: np.ndarray,
        teacher: Teacher,
        ensemble: RewardEnsemble,
        optimizer: torch.optim.Optimizer,
        prefs: PreferenceDataset,
        agent_data: AgentData,
        rng: np.random.Generator,
        surf: Surf | None = None,
        log_scalars: Callable[[dict[str, float], int], None] | None = None,
        query_clips=None,
    ):
        """``sessions``: the environment steps of the sessions (rlhf.schedule); ``query_clips``: an
        rlhf.video.QueryClipRecorder when clips of the queries are kept with the run."""
        self.cfg, self.sessions, self.teacher = cfg, sessions, teacher
        self.ensemble, self.optimizer, self.prefs = ensemble, optimizer, prefs
        self.agent_data, self.rng, self.surf = agent_data, rng, surf
        self.log_scalars = log_scalars or (lambda values, step: None)
        self.query_clips = query_clips
        self.stats = FeedbackStats()
        self.next_session = 0  # sessions asked so far
        self.updates = 0  # reward updates so far
        self.idle_seconds = 0.0  # since the last update
        self.last_step = -1
        self.env_id, self.run_id = "", ""  # where the labels come from (set by keep_preferences)
        self.answered_pairs: list[LabelledPairs] = []  # every label of this run's teacher, by session

    @property
    def has_reward(self) -> bool:
        """Whether the ensemble has been trained at least once (before that, its reward means nothing)."""
        return self.updates > 0

    def step(self, step: int) -> bool:
        """The agent has taken ``step`` environment steps: ask the sessions due, collect answers (waiting for them
        after asking, with --feedback-wait; else every :data:`POLL_EVERY_STEPS` steps) and learn from them.
        True when the reward ensemble was updated."""
        before, self.last_step = self.last_step, step
        if self.updates == 0 and self.next_session == 0 and self.prefs.loaded() and step >= self.sessions[0]:
            self.learn([], step)  # the loaded labels, before the first session is selected and asked
        asked = False
        while self.next_session < len(self.sessions) and step >= self.sessions[self.next_session]:
            cfg = self.cfg
            pairs = self.agent_data.select(cfg.num_queries, cfg.num_queries * cfg.pool_multiplier,
                                           cfg.segment_length, cfg.strategy, self.rng)  # fmt: skip
            self.teacher.submit(*pairs, self.next_session)
            self.next_session, asked = self.next_session + 1, True
        waiting = asked and self.cfg.wait
        if self.next_session == 0 or not (waiting or step // POLL_EVERY_STEPS > before // POLL_EVERY_STEPS):
            return False
        t_wait = time.time()
        answered = self.teacher.collect(wait=waiting, timeout=self.cfg.timeout)
        revisions = getattr(self.teacher, "revisions", None)  # a human teacher's, after a labeller's exclusion
        revised = revisions() if revisions is not None else []
        self.idle_seconds += time.time() - t_wait
        if not answered and not revised:
            return False
        # The answers live only in memory until stored: an interrupt waits for the update, so a checkpoint never
        # holds half a session (a SIGTERM inside PreferenceDataset.add saved A segments without their B segments).
        with signals_deferred("the reward model update"):
            self.learn(answered, step, revised)
        return True

    def learn(self, answered: list[Answers], step: int, revised: Sequence[Answers] = ()) -> dict[str, float]:
        """Store the answered sessions' labels, train the ensemble on all kept labels, let the agent relabel.
        ``revised``: sessions learned from before whose labels changed (an excluded labeller's are gone): their
        old labels are forgotten and the new ones stored instead."""
        t0 = time.time()
        if self.query_clips is not None:
            for answers in answered:
                self.query_clips.record(answers.seg_a, answers.seg_b, answers.labels, answers.session, step)
        revised = [r for r in revised if self.forget(r)]
        if revised:
            log.info("step %d: sessions %s learned again without the labels of excluded labellers", step,
                     [r.session for r in revised])  # fmt: skip
        answered = [*revised, *answered]
        if self.surf is not None:  # its unlabelled pool is sized by the labels there will be after this session
            labelled = len(self.prefs) + sum(int((~np.isnan(a.labels)).sum()) for a in answered)
            self.surf.prepare(self.agent_data.select, self.ensemble, labelled, self.rng)
        for answers in answered:
            self.store(answers)
        trained = train_reward_ensemble(self.ensemble, self.optimizer, self.prefs, self.cfg.training, self.rng,
                                        semi_supervised=self.surf)  # fmt: skip
        self.updates += 1
        self.agent_data.reward_updated(self.updates)
        metrics = {f"reward_model/{k}": v for k, v in trained.items()}
        if self.surf is not None:
            metrics["reward_model/surf_confident_fraction"] = self.surf.last_confident_fraction
        newest = self.agent_data.newest(METRIC_TRANSITIONS)
        obs, actions = (
            newest.obs.reshape(-1, newest.obs.shape[-1]),
            newest.actions.reshape(-1, newest.actions.shape[-1]),
        )
        mean, std = predict_rewards(self.ensemble, obs, actions)
        # the reward the teacher judges by: a behaviour teacher's criterion, else the environment's
        criterion = getattr(self.teacher, "criterion", None)
        target = newest.true_rewards if criterion is None else criterion(newest)
        metrics["reward_model/pearson"] = pearson(mean, target.reshape(-1))
        metrics["reward_model/ensemble_std"] = float(std.mean())
        metrics["feedback/session_seconds"] = time.time() - t0
        metrics["feedback/wait_seconds"], self.idle_seconds = self.idle_seconds, 0.0
        render_seconds = getattr(self.teacher, "render_seconds", None)
        if render_seconds:
            metrics["feedback/clip_render_seconds"] = float(np.mean(render_seconds))
        quality = getattr(self.teacher, "quality_scalars", None)  # a human teacher's labeller statistics
        if quality is not None:
            metrics |= quality()
        metrics |= self.stats.as_scalars()
        metrics["feedback/loaded_labels"] = float(self.prefs.loaded())
        self.log_scalars(metrics, step)
        log.info("step %d: %d labels, reward model val accuracy %.3f", step, self.stats.total_labels,
                 metrics["reward_model/val_accuracy"])  # fmt: skip
        return metrics

    def store(self, answers: Answers) -> None:
        """Keep the answered queries with their segments' data (skips are counted, not stored)."""
        labels = answers.labels
        answered = ~np.isnan(labels)
        self.prefs.add(answers.seg_a[answered], answers.seg_b[answered], labels[answered], answers.session,
                       self.cfg.val_split, self.rng)  # fmt: skip
        if self.cfg.keep_sessions is not None:
            self.prefs.keep_last_sessions(self.cfg.keep_sessions)
        if self.run_id:
            self.answered_pairs.append(self._labelled_pairs(answers, answered))
        self.stats.total_labels += int(answered.sum())
        self.stats.skipped += int((~answered).sum())
        self.stats.equal += int((labels[answered] == 0.5).sum())
        self.stats.sessions += 1

    def forget(self, answers: Answers) -> bool:
        """Forget the stored labels of ``answers.session`` (to store its revised ones); False if none are kept
        (--pref-buffer-size-sessions dropped it: nothing to revise)."""
        kept = self.prefs.session == answers.session
        if not kept.any():
            return False
        equal = int((self.prefs.labels[kept] == 0.5).sum())
        n = self.prefs.drop_session(answers.session)
        self.answered_pairs = [p.select(p.sessions != answers.session) for p in self.answered_pairs]
        self.stats.total_labels -= n
        self.stats.equal -= equal
        self.stats.skipped -= len(answers.labels) - n
        self.stats.sessions -= 1
        return True

    def _labelled_pairs(self, answers: Answers, answered: np.ndarray) -> LabelledPairs:
        index = np.flatnonzero(answered)
        n = len(index)
        labellers = answers.labellers if answers.labellers is not None else [""] * len(answered)
        times = answers.times if answers.times is not None else np.full(len(answered), np.nan)
        return LabelledPairs(
            self.env_id, answers.seg_a[index], answers.seg_b[index], answers.labels[index].astype(np.float32),
            np.asarray(times, np.float64)[index], np.full(n, answers.session, np.int64), [self.run_id] * n,
            [labellers[i] for i in index], [query_id(answers.session, int(i)) for i in index],
        )  # fmt: skip

    def labelled_pairs(self) -> LabelledPairs:
        """Every label this run's teacher gave so far, as a preference dataset."""
        H, obs_dim, act_dim, state_dim = self.prefs.dims()
        return LabelledPairs.concatenate([empty(self.env_id, H, obs_dim, act_dim, state_dim), *self.answered_pairs])

    def load_pairs(self, pairs: LabelledPairs) -> None:
        """Add labels from a preference dataset (--preferences-load); the ensemble trains on them before the first
        session."""
        self.prefs.add(pairs.seg_a, pairs.seg_b, pairs.labels, LOADED_SESSION, self.cfg.val_split, self.rng)

    def final_scalars(self, ended: bool) -> dict[str, float]:
        """The label counts and the asked/answered report at the end of the run (or its interruption), when a
        human teacher's unanswered queries are withdrawn once the run has ended (rlhf.teacher_factory)."""
        from rlhf.teacher_factory import feedback_report

        return {**self.stats.as_scalars(), **feedback_report(self.teacher, self.stats, ended)}

    def completed_sessions(self) -> set[int]:
        """Sessions whose labels are stored (a restarted human teacher asks none of them again)."""
        return set(self.prefs.session[self.prefs.session >= 0].tolist())

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"next_session": self.next_session, "updates": self.updates, "idle_seconds": self.idle_seconds,
                "last_step": self.last_step, "stats": dict(vars(self.stats)), "preferences": self.prefs.state_dict(),
                "reward_ensemble": self.ensemble.state_dict(),
                "reward_optimizer": self.optimizer.state_dict()}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.next_session = expect(state, "next_session", int, 0)
        if self.next_session > len(self.sessions):
            raise ValueError(f"next_session {self.next_session} is beyond the run's {len(self.sessions)} sessions")
        self.updates = expect(state, "updates", int, 0)
        self.idle_seconds = float(expect(state, "idle_seconds", (int, float), 0))
        self.last_step = expect(state, "last_step", int, -1)
        stats = expect(state, "stats", dict)
        for key in vars(self.stats):
            setattr(self.stats, key, expect(stats, key, int, 0))
        if self.answered_pairs:  # the run's dataset, written just before this checkpoint or after it: cut it back
            pairs = LabelledPairs.concatenate(self.answered_pairs)
            if len(pairs) < self.stats.total_labels:
                log.warning("the run's %s holds %d labels, its checkpoint %d: it misses the others", RUN_FILE,
                            len(pairs), self.stats.total_labels)  # fmt: skip
            self.answered_pairs = [pairs.head(self.stats.total_labels)]
        self.prefs.load_state_dict(state["preferences"])
        self.ensemble.load_state_dict(state["reward_ensemble"])
        self.optimizer.load_state_dict(state["reward_optimizer"])


def make_teacher(args, run, loop: FeedbackLoop, rng: np.random.Generator) -> Teacher:
    """The teacher the flags ask for; a human teacher (and an autostarted server) is closed when ``run`` ends.
    A resumed run's loop tells it the sessions whose labels it holds (none is asked again) and the next one."""
    from rlhf.teacher_factory import human_teacher, simulated_teacher

    if args.teacher_feedback_mode == "human":
        teacher, server = human_teacher(
            args, run.directory(), completed_sessions=loop.completed_sessions(), next_session=loop.next_session
        )
        run.close_at_end(server.stop if server is not None else None, teacher)
        return teacher
    teacher = simulated_teacher(args, rng)
    run.close_at_end(teacher)
    return teacher


def keep_preferences(args, run, loop: FeedbackLoop) -> None:
    """The run's labels as a preference dataset at ``<run>/preferences.safetensors``, written at every checkpoint
    and at the end (and read back on --resume); the datasets of --preferences-load added to the labels (a resumed
    run's checkpoint holds them already). ValueError naming the file for a dataset that does not fit the run."""
    path = run.directory() / RUN_FILE
    loop.env_id, loop.run_id = args.env_id, run.directory().name
    H, obs_dim, act_dim, state_dim = loop.prefs.dims()
    if run.resumed:
        if path.exists():  # the checkpoint's restore cuts it back to the labels it holds (FeedbackLoop.load_state_dict)
            loop.answered_pairs = [read(path)]
    else:
        for source in args.preferences_load:
            try:
                pairs = read(source)
            except DatasetError as e:
                raise ValueError(f"--preferences-load: {e}") from e
            check_fits(pairs, f"--preferences-load {source}", args.env_id, H, obs_dim, act_dim, state_dim)
            loop.load_pairs(pairs)
            log.info("loaded %d labels from %s", len(pairs), source)
    run.on_save(lambda: write(path, loop.labelled_pairs()))
