"""Deterministic noise keyed by an integer (an instant, a day): the same key always draws the same number.

A counter-based generator (the splitmix64 finaliser over `seed + key * golden ratio`) makes every
value a pure function of its stream name and key, so a longer or later demo span reproduces the
history it shares with an earlier one exactly — which is what keeps a second `--demo` run a no-op.
"""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_UNIT = 2.0**-53


def _seed(stream: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(stream.encode(), digest_size=8).digest(), "little"))


def _mix(state: np.ndarray) -> np.ndarray:
    state = (state ^ (state >> np.uint64(30))) * _MIX_1
    state = (state ^ (state >> np.uint64(27))) * _MIX_2
    return state ^ (state >> np.uint64(31))


def uniform(stream: str, keys: np.ndarray) -> np.ndarray:
    """Return one uniform number in (0, 1) per key."""
    state = _seed(stream) + np.asarray(keys, dtype=np.int64).astype(np.uint64) * _GOLDEN
    return ((_mix(state) >> np.uint64(11)).astype(np.float64) + 0.5) * _UNIT


def normal(stream: str, keys: np.ndarray) -> np.ndarray:
    """Return one standard normal number per key (Box–Muller over two uniform streams)."""
    radius = np.sqrt(-2.0 * np.log(uniform(stream + "/radius", keys)))
    return radius * np.cos(2.0 * np.pi * uniform(stream + "/angle", keys))


def lognormal_factor(stream: str, keys: np.ndarray, sigma: float) -> np.ndarray:
    """Return a positive multiplicative factor with mean 1 and log-standard-deviation `sigma`."""
    return np.exp(sigma * normal(stream, keys) - sigma * sigma / 2.0)
