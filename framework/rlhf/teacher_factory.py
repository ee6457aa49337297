"""Building the teacher a run asked for: the B-Pref simulated teacher, or people through the labelling server."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from rlhf.feedback import SimulatedAnswers
from rlhf.teacher import SimulatedTeacher

log = logging.getLogger("cleanrlhf")


def simulated_teacher(args, rng: np.random.Generator) -> SimulatedAnswers:
    """The B-Pref teacher of the flags; with --teacher-sim-reward it judges by that criterion (rlhf.custom_reward),
    tried once on a random segment of the task before the run starts."""
    teacher = SimulatedTeacher.from_preset(
        args.teacher_sim_preset,
        rng,
        beta=args.teacher_sim_beta,
        gamma=args.teacher_sim_gamma,
        epsilon=args.teacher_sim_epsilon,
        delta_skip=args.teacher_sim_delta_skip,
        delta_equal=args.teacher_sim_delta_equal,
    )
    if args.teacher_sim_reward is None:
        return SimulatedAnswers(teacher, f"simulated:{args.teacher_sim_preset}")
    from rlhf.custom_reward import CustomReward

    rewards = CustomReward(args.teacher_sim_reward, args.env_id)
    rewards.probe(args.trajectory_length, seed=args.seed)
    return SimulatedAnswers(teacher, f"simulated:{args.teacher_sim_reward}", rewards)


def check_server_url(url: str) -> tuple[str, int]:
    """(host, port) of --feedback-server-url; ValueError for anything but http(s)://host[:port]."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"--feedback-server-url must look like http://host:port, got {url!r}")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as e:
        raise ValueError(f"--feedback-server-url has a bad port: {url!r}") from e
    return parsed.hostname, port


def page_address(url: str, token: str | None, token_from_flag: bool) -> str:
    """The labelling page's address as the log shows it: never with the token itself (logs are kept and shared),
    but saying where the labeller's link gets it."""
    base = url.rstrip("/") + "/"
    if not token:
        return base
    return base + ("?token=<the --feedback-server-token>" if token_from_flag else "?token=$FEEDBACK_SERVER_TOKEN")


def human_teacher(args, run_dir: Path, completed_sessions: set[int], next_session: int | None = None):
    """(HumanTeacher, the autostarted or adopted server or None). The run's directory name is its id on the server.

    With --feedback-server-autostart, a resumed run whose server survived the crash of its trainer (it runs in its
    own session) uses that server; a server that cannot be started (its port is in use) is a ValueError, and the
    data directory this call created is removed again."""
    from rlhf.feedback_client import FeedbackClient
    from rlhf.feedback_server_process import TOKEN_ENV, FeedbackServerStartError, adopt_or_start_feedback_server
    from rlhf.human import HumanTeacher

    url = args.feedback_server_url if "://" in args.feedback_server_url else f"http://{args.feedback_server_url}"
    token = args.feedback_server_token or os.environ.get(TOKEN_ENV) or None
    if args.feedback_server_token:
        log.warning(
            "--feedback-server-token shows the token in the process list to every user of this machine; prefer $%s",
            TOKEN_ENV,
        )
    server = None
    if args.feedback_server_autostart:
        host, port = check_server_url(url)
        try:
            # The run's labels live with the run, so a resumed run finds them again.
            server = adopt_or_start_feedback_server(host, port, run_dir / "feedback_server", token=token)
        except FeedbackServerStartError as e:
            raise ValueError(f"--feedback-server-autostart: {e}") from e
        client = server.client(run_dir.name)
        url = server.url
    else:
        client = FeedbackClient(url, run_dir.name, token=token)
    page = page_address(url, token, bool(args.feedback_server_token))
    try:
        client.health()
    except Exception as e:
        if server is not None:
            server.stop()
        raise ValueError(
            f"the labelling server at {url} does not answer ({e}); start it with "
            "`python humanFeedback/feedback_server.py` or pass --feedback-server-autostart"
        ) from e
    log.warning("label queries at %s", page)
    teacher = HumanTeacher(
        client,
        args.env_id,
        args.feedback_instruction,
        run_dir / "pending_queries",
        args.feedback_clip_size,
        page,
        completed_sessions=completed_sessions,
        next_session=next_session,
        answer_seconds=args.feedback_answer_seconds,
        repeat_fraction=args.feedback_repeat_fraction,
        double_fraction=args.feedback_double_fraction,
        exclude=tuple(args.feedback_exclude_labeller),
        rng=np.random.default_rng([args.seed, 4]),  # its own stream: the run's is not shifted by these draws
    )
    return teacher, server


def feedback_report(teacher, stats, run_ended: bool) -> dict[str, float]:
    """At the end of a run (``run_ended``) or its interruption: how many queries were asked and answered, as a log
    line and ``feedback/queries_*`` scalars; a human teacher's unanswered queries are withdrawn from the server
    once the run ended (an interrupted run may be resumed, and its labellers keep going meanwhile). A run that
    learned from no label says so: its reward model never saw a preference (issue 9, item 9)."""
    from rlhf.feedback_client import FeedbackConnectionError, FeedbackServerError

    answered = stats.total_labels + stats.skipped
    report = {"feedback/queries_asked": float(answered), "feedback/queries_answered": float(answered)}
    finish = getattr(teacher, "finish", None)  # the simulated teacher answers every query at once
    if finish is not None:
        try:
            report = finish(withdraw=run_ended)
        except (FeedbackConnectionError, FeedbackServerError) as e:
            log.warning("could not reach the labelling server at the end of the run: %s", e)
    if stats.total_labels == 0:
        log.warning(
            "this run learned from 0 labels (%d of %d queries answered): its reward model was never trained on a "
            "preference",
            report["feedback/queries_answered"],
            report["feedback/queries_asked"],
        )
    return report
