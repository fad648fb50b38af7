"""Seeded random streams and the stratified train/val split of labelled datasets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssl_core import ConfigError

# Independent random streams drawn from the one ``trainer.seed``.
SPLIT_STREAM = 0
SYNTHETIC_COLOUR_STREAM = 1
SYNTHETIC_PIXEL_STREAM = 2


def seeded_rng(seed: int, *stream: int) -> np.random.Generator:
    # SeedSequence wants non-negative entropy; the modulus keeps negative seeds usable.
    return np.random.default_rng([int(seed) % 2**64, *stream])


def check_val_fraction(value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"data.val_fraction={value} is out of range; must be > 0 and < 1")
    return value


def stratified_split(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a per-class random train/val split, each sorted.

    Each class with at least two items puts ``round(n * val_fraction)`` of them in val, but
    at least one and never all, so both splits hold every such class; a class with one item
    stays in train. Deterministic for a given ``seed``.

    :raises ConfigError: when ``val_fraction`` is not strictly between 0 and 1.
    """
    val_fraction = check_val_fraction(val_fraction)
    labels = np.asarray(labels)
    rng = seeded_rng(seed, SPLIT_STREAM)
    # One stable sort groups each class's members, ascending, as np.flatnonzero would list
    # them: the same draws as a per-class scan, without a pass over all labels per class.
    order = np.argsort(labels, kind="stable")
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    val: list[np.ndarray] = []
    for start, count in zip(starts.tolist(), counts.tolist(), strict=True):
        if count < 2:
            continue
        members = order[start : start + count]
        n_val = int(np.floor(count * val_fraction + 0.5))
        n_val = min(max(n_val, 1), count - 1)
        val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    in_train = np.ones(len(labels), dtype=bool)
    in_train[val_idx] = False
    return np.flatnonzero(in_train), val_idx
