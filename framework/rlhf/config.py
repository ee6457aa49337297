"""Command-line flags shared by the algorithm scripts, as dataclasses parsed by tyro (flat flags, `-` or `_`).

Each script's ``Args`` inherits the groups it uses, so a flag has one name, one default and one help text across
sac.py, sac_rlhf.py, ppo.py and pref_ppo.py. Attribute docstrings are the ``-h`` help. The library's configs
(rlhf.agent.SACConfig, rlhf.reward_training.RewardTrainingConfig, rlhf.surf.SurfConfig, rlhf.reward_model's
RewardEnsemble) take their defaults from these classes and are built from a script's flags by keyword, so each
default is written once, here.

Each group checks its own flags in ``check`` (next to the knobs; messages name the flag); :func:`check_flags`
runs the checks of every group a script's ``Args`` inherits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import tyro


class ConfigError(ValueError):
    """Bad flags or a bad flag combination, found before training starts (the CLI exits with status 2)."""


def flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _positive(args, *names: str) -> None:
    for name in names:
        if getattr(args, name) <= 0:
            raise ValueError(f"{flag(name)} must be positive, got {getattr(args, name)}")


def _non_negative(args, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 0:
            raise ValueError(f"{flag(name)} must be >= 0, got {getattr(args, name)}")


def check_flags(args) -> None:
    """Run the ``check`` of every flag group in ``type(args)``'s bases, general ones first."""
    for cls in reversed(type(args).__mro__):
        check = cls.__dict__.get("check")
        if check is not None:
            check(args)


@dataclass
class GeneralArgs:
    exp_name: str = ""
    """name of the experiment (default: the script's name)"""
    seed: int = 1
    """seed of torch, numpy, the environment and the simulated teacher"""
    torch_deterministic: bool = True
    """make torch use deterministic algorithms (cudnn.deterministic)"""
    cuda: bool = True
    """use CUDA when it is available"""
    track: bool = False
    """log to Weights & Biases"""
    wandb_project_name: str = "CleanRLHF"
    """W&B project name"""
    wandb_entity: str | None = None
    """W&B entity (team or user)"""
    capture_video: bool = False
    """save evaluation videos and the queried segments' clips under the run directory"""
    render_mode: Literal["", "human"] = ""
    """'human' opens MuJoCo's live viewer during training (needs a display)"""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """logging verbosity"""
    log_file: bool = True
    """also write the log to log.log in the run directory (appended to when the run is resumed), as the original
    CleanRLHF does"""
    env_id: str = "Hopper-v5"
    """a Gymnasium MuJoCo v5 id (e.g. Hopper-v5) or dm_control/<domain>-<task>-v0"""
    total_timesteps: int = 1_000_000
    """total environment steps, including unsupervised exploration"""
    log_frequency: int = 1_000
    """write training scalars every this many environment steps"""
    evaluation_frequency: int = 10_000
    """evaluate the deterministic policy on the true return every this many steps"""
    evaluation_episodes: int = 10
    """episodes per evaluation"""
    early_stopping: bool = False
    """stop training when the evaluation return stops improving"""
    early_stopping_step: int = 500_000
    """earliest step at which early stopping may stop the run"""
    early_stop_patience: int = 5
    """evaluations without improvement of the best mean return before stopping; also how many of the latest
    evaluations --early-stopping-mean averages (the original's only use of it)"""
    early_stopping_mean: float = 0.0
    """stop when the mean return of the last --early-stop-patience evaluations is at or above this value (below it
    with --no-enable-greater-or-smaller-check); 0 disables this criterion"""
    enable_greater_or_smaller_check: bool = True
    """the direction of --early-stopping-mean: stop once the return reaches it (a target), or, with
    --no-enable-greater-or-smaller-check (the original CleanRLHF's default), once it is still below it (a run not
    worth finishing)"""
    threads: int = 1
    """torch CPU threads (0: one per CPU this process may run on). 1 by default: with other jobs on the cores, more
    threads made SAC updates many times slower (benchmarks/threads.py, numbers in benchmarks/README.md)"""
    runs_dir: str = ""
    """directory for run outputs (default: runs/ at the repository root)"""
    progress_bar: bool = True
    """show a progress bar on stderr"""

    def check(self) -> None:
        _positive(self, "total_timesteps", "log_frequency", "evaluation_frequency", "evaluation_episodes",
                  "early_stop_patience")  # fmt: skip
        _non_negative(self, "threads")
        if self.capture_video and self.render_mode == "human":
            raise ValueError("--capture-video and --render-mode human cannot be used together in one run")
        from rlhf.rendering import check_render_mode

        check_render_mode(self.render_mode)


@dataclass
class ResumeArgs:
    checkpoint_frequency: int = 100_000
    """save a resumable checkpoint (with the replay buffer) at the first episode end after every this many steps"""
    resume: str | None = None
    """continue the run in this run directory from its last checkpoint, with the run's own flags (only --threads,
    --progress-bar, --log-level and --log-file may be given again)"""

    def check(self) -> None:
        _positive(self, "checkpoint_frequency")


@dataclass
class SACArgs:
    buffer_size: int = 1_000_000
    """replay buffer capacity (transitions)"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """target network smoothing coefficient"""
    batch_size: int = 256
    """SAC minibatch size"""
    learning_starts: int = 5_000
    """step at which SAC updates start (actions before it are random unless pre-exploration ran)"""
    policy_lr: float = 3e-4
    """actor learning rate"""
    q_lr: float = 1e-3
    """critic (and temperature) learning rate"""
    policy_frequency: int = 2
    """actor update period in critic updates (delayed, TD3-style)"""
    target_network_frequency: int = 1
    """target network update period in critic updates"""
    alpha: float = 0.2
    """entropy temperature (initial value when --autotune)"""
    autotune: bool = True
    """learn the temperature to reach a target entropy of -|A|"""
    actor_and_q_net_hidden_dim: int = 256
    """width of every hidden layer of the actor and critics"""
    actor_and_q_net_hidden_layers: int = 2
    """number of hidden layers of the actor and critics"""

    def check(self) -> None:
        _positive(self, "buffer_size", "batch_size", "policy_frequency", "target_network_frequency",
                  "actor_and_q_net_hidden_dim", "actor_and_q_net_hidden_layers")  # fmt: skip
        _non_negative(self, "learning_starts")
        if self.learning_starts >= self.total_timesteps:  # type: ignore[attr-defined]  # GeneralArgs, in every Args
            raise ValueError(f"--learning-starts ({self.learning_starts}) must be below --total-timesteps")


@dataclass
class RewardModelArgs:
    """The reward ensemble and its training: shared by the RLHF scripts and framework/train_reward_model.py."""

    reward_net_hidden_dim: int = 64
    """width of the reward model's hidden layers (PEBBLE: 256; 64 measured as accurate up to a few hundred labels
    and 4-6x cheaper, 256 slightly better at 500: benchmarks/reward_model_size.py)"""
    reward_net_hidden_layers: int = 3
    """number of hidden layers of each reward-model member"""
    reward_net_dropout: float = 0.0
    """dropout in the reward model during training (never at prediction)"""
    reward_net_val_split: float = 0.2
    """fraction of each session's labels held out for validation"""
    reward_net_ensemble_size: int = 3
    """members of the reward ensemble"""
    teacher_update_epochs: int = 50
    """maximum reward-model epochs per session (stops early at 97 % training accuracy, as PEBBLE)"""
    teacher_batch_strategy: Literal["minibatch", "batch", "full"] = "minibatch"
    """per epoch: all labels in minibatches, one random batch, or all labels in one step"""
    teacher_minibatch_size: int = 64
    """minibatch size of the 'minibatch' strategy"""
    teacher_feedback_batch_size: int = 128
    """batch size of the 'batch' strategy"""
    teacher_learning_rate: float = 3e-4
    """reward-model Adam learning rate"""

    def check(self) -> None:
        _positive(self, "teacher_update_epochs", "teacher_minibatch_size", "teacher_feedback_batch_size",
                  "reward_net_ensemble_size", "reward_net_hidden_dim")  # fmt: skip
        _non_negative(self, "reward_net_hidden_layers")
        if not 0.0 <= self.reward_net_val_split < 1.0:
            raise ValueError(f"--reward-net-val-split must be in [0, 1), got {self.reward_net_val_split}")
        if not 0.0 <= self.reward_net_dropout < 1.0:
            raise ValueError(f"--reward-net-dropout must be in [0, 1), got {self.reward_net_dropout}")


@dataclass
class FeedbackArgs(RewardModelArgs):
    teacher_feedback_mode: Literal["simulated", "human"] = "simulated"
    """who answers queries: the B-Pref simulated teacher or people in a browser"""
    feedback_server_url: str = "http://localhost:5001"
    """labelling server for --teacher-feedback-mode human"""
    feedback_server_autostart: bool = False
    """start (and stop) the labelling server with the run (on the port of --feedback-server-url)"""
    feedback_server_token: str | None = None
    """token of a server started with --token (default: $FEEDBACK_SERVER_TOKEN)"""
    feedback_instruction: str = "Which clip shows the better behaviour?"
    """task instruction shown to labellers, e.g. 'make the ant raise one leg'"""
    feedback_wait: bool = True
    """wait at each session until its queries are answered (--no-feedback-wait keeps training while labels arrive)"""
    feedback_timeout: float = 0.0
    """seconds to wait per session before training on (0: no limit); late answers are used when they arrive"""
    feedback_clip_size: int = 240
    """width and height in pixels of the clips shown to labellers"""
    feedback_answer_seconds: float = 2.0
    """labelling pace to plan for: a session is shown once enough of it is rendered that someone answering every
    this many seconds never waits for the rest (0: show each pair as soon as it exists)"""
    feedback_repeat_fraction: float = 0.0
    """human teacher: ask this fraction of each session's queries more, re-asking earlier labelled pairs (sides
    swapped) of their labeller, to measure self-consistency; repeats never train"""
    feedback_double_fraction: float = 0.0
    """human teacher: this fraction of each session's queries is answered by two different labellers, to measure
    their agreement; it trains on the label both gave, and a disagreement is dropped"""
    feedback_exclude_labeller: tuple[str, ...] = ()
    """human teacher: labellers whose answers this run ignores, labels already learned from included (repeatable)"""
    teacher_feedback_schedule: Literal["linear", "exponential"] = "exponential"
    """when feedback sessions happen: evenly spaced, or dense early with exponentially growing gaps"""
    teacher_feedback_total_queries: int = 1_400
    """queries over the whole run"""
    teacher_feedback_num_queries_per_session: int = 20
    """queries per feedback session"""
    teacher_feedback_exponential_lambda: float = 0.1
    """growth rate of the gaps between sessions of the exponential schedule"""
    pref_buffer_size_sessions: str = "all"
    """how many of the latest sessions' labels to train on ('all' or a positive integer)"""
    trajectory_length: int = 64
    """segment length H in environment steps"""
    preference_sampling: Literal["uniform", "disagree", "entropy"] = "disagree"
    """query selection over the candidate pool"""
    query_pool_multiplier: int = 10
    """candidate pairs drawn per session, as a multiple of the queries asked (PEBBLE's large batch)"""
    teacher_sim_preset: Literal["oracle", "stochastic", "myopic", "mistake", "skip", "equal"] = "oracle"
    """B-Pref simulated teacher; the knobs below, when given, take precedence over the preset's values"""
    teacher_sim_beta: float | None = None
    """rationality β: < 0 perfectly rational, ≥ 0 Bernoulli(σ(β ΔR))"""
    teacher_sim_gamma: float | None = None
    """myopia γ: weight γ^(H-1-t) of step t"""
    teacher_sim_epsilon: float | None = None
    """probability of flipping a label (mistakes)"""
    teacher_sim_delta_skip: float | None = None
    """skip queries whose two returns are both below this (negative: never skip, e.g. the original CleanRLHF's
    -10000000)"""
    teacher_sim_delta_equal: float | None = None
    """label 0.5 when the returns differ by less than this (negative: never)"""
    # Preference datasets and the behaviour teacher (issue 12, items 3 and 5)
    preferences_load: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """a preference dataset (.safetensors, rlhf.pref_dataset) whose labels the reward model trains on before the
    first session; repeat the flag to load several. They are not asked again and do not count towards
    --teacher-feedback-total-queries"""
    teacher_sim_reward: str | None = None
    """the simulated teacher judges segments by this function of their transitions instead of the environment's
    reward: module:function or path/to/file.py:function (rlhf.custom_reward; example: examples/ant_raise_leg.py)"""

    def keep_sessions(self) -> int | None:
        """--pref-buffer-size-sessions: None ('all') keeps every label."""
        return parse_pref_buffer_sessions(self.pref_buffer_size_sessions)

    def check(self) -> None:
        _positive(self, "teacher_feedback_num_queries_per_session", "trajectory_length", "query_pool_multiplier",
                  "feedback_clip_size")  # fmt: skip
        _non_negative(self, "teacher_feedback_total_queries", "feedback_timeout", "feedback_answer_seconds")
        if self.teacher_feedback_num_queries_per_session > self.teacher_feedback_total_queries:
            raise ValueError(
                f"--teacher-feedback-num-queries-per-session ({self.teacher_feedback_num_queries_per_session})"
                f" exceeds --teacher-feedback-total-queries ({self.teacher_feedback_total_queries})"
            )
        if self.feedback_server_autostart and self.teacher_feedback_mode != "human":
            raise ValueError("--feedback-server-autostart needs --teacher-feedback-mode human")
        for name in ("feedback_repeat_fraction", "feedback_double_fraction"):
            flag = "--" + name.replace("_", "-")
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{flag} must be in [0, 1], got {getattr(self, name)}")
            if getattr(self, name) and self.teacher_feedback_mode != "human":
                raise ValueError(f"{flag} needs --teacher-feedback-mode human (the simulated teacher never varies)")
        if self.feedback_exclude_labeller and self.teacher_feedback_mode != "human":
            raise ValueError("--feedback-exclude-labeller needs --teacher-feedback-mode human")
        if self.teacher_feedback_mode == "human":
            from rlhf.teacher_factory import check_server_url

            check_server_url(self.feedback_server_url)
        self.keep_sessions()
        if self.teacher_sim_reward is not None:
            if self.teacher_feedback_mode != "simulated":
                raise ValueError("--teacher-sim-reward needs --teacher-feedback-mode simulated")
            from rlhf.custom_reward import load_reward_function

            load_reward_function(self.teacher_sim_reward)


@dataclass
class SurfArgs:
    surf: bool = True
    """SURF: temporal cropping of labelled pairs and confidence-thresholded pseudo-labels for unlabelled pairs"""
    unlabeled_batch_ratio: int = 1
    """unlabelled (pseudo-labelled) pairs per labelled pair in each reward-model batch"""
    surf_sampling_strategy: Literal["uniform", "disagree", "entropy"] = "uniform"
    """how the unlabelled pairs for pseudo-labelling are drawn from the buffer"""
    surf_tau: float = 0.999
    """confidence threshold: pseudo-label only pairs with ensemble-mean P > tau or < 1 - tau"""
    lambda_ssl: float = 0.1
    """weight of the pseudo-labelled loss"""
    max_augmentation_offset: int = 10
    """cropped length is at least H - max_augmentation_offset"""
    min_augmentation_offset: int = 5
    """cropped length is at most H - min_augmentation_offset"""

    def check(self) -> None:
        if not self.surf:
            return
        H = self.trajectory_length  # type: ignore[attr-defined]  # FeedbackArgs, in every Args with SURF
        if not 0 <= self.min_augmentation_offset <= self.max_augmentation_offset < H:
            raise ValueError(
                "SURF needs 0 <= --min-augmentation-offset <= --max-augmentation-offset < --trajectory-length, got "
                f"{self.min_augmentation_offset}, {self.max_augmentation_offset}, {H}"
            )
        if self.unlabeled_batch_ratio < 1:
            raise ValueError(f"--unlabeled-batch-ratio must be >= 1, got {self.unlabeled_batch_ratio}")
        if not 0.5 < self.surf_tau < 1.0:
            raise ValueError(f"--surf-tau must be in (0.5, 1), got {self.surf_tau}")
        if self.lambda_ssl < 0:
            raise ValueError(f"--lambda-ssl must be >= 0, got {self.lambda_ssl}")


@dataclass
class RuneArgs:
    rune: bool = False
    """RUNE: add beta_t * (ensemble std of r̂) to the learned reward to explore where the reward is uncertain"""
    rune_beta: float = 0.05
    """RUNE's initial weight beta_0"""
    rune_beta_decay: float = 0.0001
    """per-step decay rho of beta_t = beta_0 (1 - rho)^t"""

    def check(self) -> None:
        if self.rune and not (self.rune_beta >= 0 and 0 <= self.rune_beta_decay < 1):
            raise ValueError("--rune-beta must be >= 0 and --rune-beta-decay in [0, 1)")


@dataclass
class ExplorationArgs:
    unsupervised_exploration: bool = True
    """pre-train the agent on a state-entropy reward before asking for feedback (PEBBLE)"""
    total_explore_steps: int = 10_000
    """environment steps of unsupervised exploration"""
    explore_batch_size: int = 256
    """SAC minibatch size during exploration"""
    explore_learning_starts: int = 512
    """random-action steps at the start of exploration"""
    exploration_load: bool = False
    """skip exploration and load its agent and replay buffer"""
    path_to_replay_buffer: str | None = None
    """replay buffer saved after exploration (with --exploration-load)"""
    path_to_model: str | None = None
    """agent checkpoint saved after exploration (with --exploration-load)"""

    def check(self) -> None:
        _positive(self, "explore_batch_size")
        _non_negative(self, "total_explore_steps", "explore_learning_starts")
        if self.exploration_load and not (self.path_to_replay_buffer and self.path_to_model):
            raise ValueError("--exploration-load needs --path-to-replay-buffer and --path-to-model")

    def explore_steps(self) -> int:
        """Steps of unsupervised pre-exploration (0 with --no-unsupervised-exploration)."""
        return self.total_explore_steps if self.unsupervised_exploration else 0


def parse_pref_buffer_sessions(value: str) -> int | None:
    """'all' -> None (keep every label), else a positive number of sessions."""
    if value == "all":
        return None
    try:
        sessions = int(value)
    except ValueError:
        sessions = 0
    if sessions <= 0:
        raise ValueError(f"--pref-buffer-size-sessions must be 'all' or a positive integer, got {value!r}")
    return sessions
