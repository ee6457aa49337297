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
    return SimulatedAnswers(
        SimulatedTeacher.from_preset(
            args.teacher_sim_preset,
            rng,
            beta=args.teacher_sim_beta,
            gamma=args.teacher_sim_gamma,
            epsilon=args.teacher_sim_epsilon,
            delta_skip=args.teacher_sim_delta_skip,
            delta_equal=args.teacher_sim_delta_equal,
        )
    )


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


def human_teacher(args, run_dir: Path, completed_sessions: set[int]):
    """(HumanTeacher, the autostarted server or None). The run's directory name is its id on the server."""
    from rlhf.feedback_client import FeedbackClient
    from rlhf.feedback_server_process import TOKEN_ENV, start_feedback_server
    from rlhf.human import HumanTeacher

    url = args.feedback_server_url if "://" in args.feedback_server_url else f"http://{args.feedback_server_url}"
    token = args.feedback_server_token or os.environ.get(TOKEN_ENV) or None
    server = None
    if args.feedback_server_autostart:
        host, port = check_server_url(url)
        # The run's labels live with the run, so a resumed run finds them again.
        server = start_feedback_server(host=host, port=port, data_dir=run_dir / "feedback_server", token=token)
        client, page = server.client(run_dir.name), server.page_url
    else:
        client = FeedbackClient(url, run_dir.name, token=token)
        page = url.rstrip("/") + "/" + (f"?token={token}" if token else "")
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
    )
    return teacher, server
