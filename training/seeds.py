"""Seeds: one run seed, and a derived seed for every random thing in it."""

from __future__ import annotations

import hashlib


def derive_seed(*keys) -> int:
    """A 31-bit seed determined by ``keys`` (ints and strings), the same in every process and run."""
    return int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:4], "little") >> 1
