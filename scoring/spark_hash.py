"""Spark's `xxhash64` in plain Python, so the API sends a route key to the canary exactly as Spark does.

XXH64 (the reference algorithm, as Spark's `XXH64.hashUnsafeBytes`) over each value's UTF-8 bytes,
the previous value's hash as the next one's seed, starting from Spark's seed 42; the result is read
as a signed 64-bit long like Spark's. Tests hold it equal to `F.xxhash64` on Spark.
"""

from __future__ import annotations

import struct

P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                      0x27D4EB2F165667C5)
MASK = (1 << 64) - 1
SPARK_SEED = 42


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * P2) & MASK, 31) * P1) & MASK


def _merge(acc: int, v: int) -> int:
    return ((acc ^ _round(0, v)) * P1 + P4) & MASK


def xxh64(data: bytes, seed: int) -> int:
    """The unsigned XXH64 of `data`."""
    n, i, seed = len(data), 0, seed & MASK
    if n >= 32:
        v = [(seed + P1 + P2) & MASK, (seed + P2) & MASK, seed, (seed - P1) & MASK]
        while i + 32 <= n:
            for j, lane in enumerate(struct.unpack_from("<4Q", data, i)):
                v[j] = _round(v[j], lane)
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & MASK
        for lane in v:
            h = _merge(h, lane)
    else:
        h = (seed + P5) & MASK
    h = (h + n) & MASK
    while i + 8 <= n:
        h = ((_rotl(h ^ _round(0, struct.unpack_from("<Q", data, i)[0]), 27) * P1) + P4) & MASK
        i += 8
    if i + 4 <= n:
        h = ((_rotl(h ^ ((struct.unpack_from("<I", data, i)[0] * P1) & MASK), 23) * P2) + P3) & MASK
        i += 4
    while i < n:
        h = (_rotl(h ^ ((data[i] * P5) & MASK), 11) * P1) & MASK
        i += 1
    h ^= h >> 33
    h = (h * P2) & MASK
    h ^= h >> 29
    h = (h * P3) & MASK
    return h ^ (h >> 32)


def spark_xxhash64(*values: str) -> int:
    """`F.xxhash64(*values)` for non-null strings: a signed 64-bit long."""
    h = SPARK_SEED
    for value in values:
        h = xxh64(value.encode("utf-8"), h)
    return h - (1 << 64) if h >= 1 << 63 else h
