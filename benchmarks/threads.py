"""torch CPU thread settings for the SAC update, alone and with a second training process on the same cores.

    uv run python benchmarks/threads.py                  # about 2 minutes
    uv run python benchmarks/threads.py --updates 300

Each setting runs in a fresh process (OMP_WAIT_POLICY must be set before torch starts) that times ``--updates``
SAC updates of the default 2 × 256 networks on Hopper-sized batches of 256 and prints milliseconds per update
(median over windows of 20 updates). "contended" runs the same measurement while a second process does the same
work on the same cores, as two seeds side by side, a sweep's workers or a shared node do.

Settings: ``1`` (one intra-op thread), ``cpus`` (as many threads as CPUs the process may run on,
``os.sched_getaffinity``: torch's own default), ``cpus+passive`` (the same with ``OMP_WAIT_POLICY=PASSIVE``, so
idle OpenMP threads sleep instead of spinning).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

SETTINGS = {
    "1": ("1", {}),
    "cpus": ("cpus", {}),
    "cpus+passive": ("cpus", {"OMP_WAIT_POLICY": "PASSIVE"}),
    "cpus+spin1k": ("cpus", {"GOMP_SPINCOUNT": "1000"}),
    "cpus+spin10k": ("cpus", {"GOMP_SPINCOUNT": "10000"}),
    "cpus+spin100k": ("cpus", {"GOMP_SPINCOUNT": "100000"}),
}


def worker(threads: str, updates: int) -> None:
    import numpy as np
    import torch

    from rlhf.agent import SAC, SACConfig

    torch.set_num_threads(len(os.sched_getaffinity(0)) if threads == "cpus" else int(threads))
    obs_dim, act_dim, batch = 11, 3, 256  # Hopper
    agent = SAC(obs_dim, act_dim, -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32), SACConfig())
    obs, act = torch.randn(batch, obs_dim), torch.rand(batch, act_dim) * 2 - 1
    rew, nxt, term = torch.randn(batch), torch.randn(batch, obs_dim), torch.zeros(batch)
    times = []
    for step in range(updates):
        t0 = time.perf_counter()
        agent.update(obs, act, rew, nxt, term, step)
        times.append(time.perf_counter() - t0)
    windows = np.array(times[len(times) // 5 :]).reshape(-1, 20).sum(1) / 20  # skip warm-up
    print(f"{1000 * float(np.median(windows)):.2f}")


def measure(setting: str, updates: int, contended: bool) -> float:
    threads, env = SETTINGS[setting]
    cmd = [sys.executable, __file__, "--worker", threads, "--updates", str(updates)]
    environ = {**os.environ, **env}
    rival = None
    if contended:  # the same work in a second process, started first so it is running throughout
        rival = subprocess.Popen([*cmd[:-1], str(updates * 3)], env=environ, stdout=subprocess.DEVNULL)
        time.sleep(3)
    out = subprocess.run(cmd, env=environ, capture_output=True, text=True, check=True)
    if rival is not None:
        rival.kill()
        rival.wait()
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--updates", type=int, default=500)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--setting", action="append", choices=list(SETTINGS), help="settings to measure (default: all)")
    a = p.parse_args()
    if a.worker is not None:
        worker(a.worker, a.updates)
        return
    print(f"CPUs available: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'setting':14s} {'alone ms/update':>16s} {'contended ms/update':>20s}")
    for setting in a.setting or SETTINGS:
        alone, contended = measure(setting, a.updates, False), measure(setting, a.updates, True)
        print(f"{setting:14s} {alone:16.2f} {contended:20.2f}")


if __name__ == "__main__":
    main()
