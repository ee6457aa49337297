"""Shared test set-up: one torch thread (tests run two at a time on two cores), a
temporary working directory so nothing depends on the CWD, and a seeded numpy generator."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = REPO_ROOT / "framework"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _one_thread_and_tmp_cwd(tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
