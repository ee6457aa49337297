"""Preference dataset: labelled queries with their segments' data, not buffer indices.

Keeping the data (observations, actions, true rewards, mask, render state) means a label stays attached to what
the teacher saw even after the replay or rollout buffer has wrapped or been overwritten. Labels are P(B ≻ A) in
{0, 0.5, 1}; skipped queries are not stored.
"""

from __future__ import annotations

import numpy as np

from rlhf.segments import Segments

VALID_LABELS = (0.0, 0.5, 1.0)
# The session of labels loaded from preference datasets (--preferences-load): before the run's own sessions (>= 0).
LOADED_SESSION = -1


class PreferenceDataset:
    def __init__(self, length: int, obs_dim: int, act_dim: int, state_dim: int):
        self.seg_a = Segments.empty(length, obs_dim, act_dim, state_dim)
        self.seg_b = Segments.empty(length, obs_dim, act_dim, state_dim)
        self.labels = np.zeros(0, np.float32)
        self.session = np.zeros(0, np.int64)
        self.is_val = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.labels)

    def dims(self) -> tuple[int, int, int, int]:
        """(segment length H, obs_dim, act_dim, state_dim)."""
        a = self.seg_a
        return a.length, int(a.obs.shape[2]), int(a.actions.shape[2]), int(a.physics_states.shape[2])

    def loaded(self) -> int:
        """How many of the labels were loaded from datasets rather than asked in this run."""
        return int((self.session == LOADED_SESSION).sum())

    def add(
        self,
        seg_a: Segments,
        seg_b: Segments,
        labels: np.ndarray,
        session: int,
        val_split: float,
        rng: np.random.Generator,
    ) -> None:
        """Store one session's labelled pairs; floor(n · val_split) of them are held out for validation."""
        labels = np.asarray(labels, np.float32)
        if not np.isin(labels, VALID_LABELS).all():
            raise ValueError(f"labels must be P(B > A) in {VALID_LABELS}; got {np.unique(labels)}")
        n = len(labels)
        is_val = np.zeros(n, bool)
        is_val[rng.permutation(n)[: int(n * val_split)]] = True
        self.seg_a = Segments.concatenate([self.seg_a, seg_a])
        self.seg_b = Segments.concatenate([self.seg_b, seg_b])
        self.labels = np.concatenate([self.labels, labels])
        self.session = np.concatenate([self.session, np.full(n, session, np.int64)])
        self.is_val = np.concatenate([self.is_val, is_val])

    def keep_last_sessions(self, sessions: int) -> None:
        """Forget labels older than the last ``sessions`` sessions (``--pref-buffer-size-sessions``); labels loaded
        from datasets (``--preferences-load``) are kept."""
        if len(self) == 0:
            return
        kept = np.unique(self.session[self.session >= 0])[-sessions:]
        self._select(np.isin(self.session, kept) | (self.session == LOADED_SESSION))

    def drop_session(self, session: int) -> int:
        """Forget one session's labels (they are learned again, revised: rlhf.labeller_quality); how many."""
        gone = self.session == session
        self._select(~gone)
        return int(gone.sum())

    def remove_last(self, n: int) -> None:
        self._select(np.arange(len(self)) < len(self) - n)

    def _select(self, keep: np.ndarray) -> None:
        self.seg_a, self.seg_b = self.seg_a[keep], self.seg_b[keep]
        self.labels, self.session, self.is_val = self.labels[keep], self.session[keep], self.is_val[keep]

    def train_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.is_val)

    def val_indices(self) -> np.ndarray:
        return np.flatnonzero(self.is_val)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            **self.seg_a.as_arrays("a_"),
            **self.seg_b.as_arrays("b_"),
            "labels": self.labels,
            "session": self.session,
            "is_val": self.is_val,
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.seg_a = Segments.from_arrays(state, "a_")
        self.seg_b = Segments.from_arrays(state, "b_")
        self.labels = np.asarray(state["labels"], np.float32)
        self.session = np.asarray(state["session"], np.int64)
        self.is_val = np.asarray(state["is_val"], bool)
        sizes = {"a segments": len(self.seg_a), "b segments": len(self.seg_b), "labels": len(self.labels),
                 "sessions": len(self.session), "validation flags": len(self.is_val)}  # fmt: skip
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the stored preferences do not pair up: {sizes}")
