"""Deterministic randomness that depends only on what it describes, never on call order.

Every random choice is keyed by names (seed, cell token, date, purpose) through a cryptographic
hash, so a cell's objects are the same whichever world it is generated in, and per-pixel noise is
keyed by the pixel's global position so that overlapping scenes agree pixel for pixel. Python's
built-in `hash()` is salted per process and is never used.
"""

from __future__ import annotations

import hashlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def key64(*parts: object) -> int:
    """A stable 64-bit integer for a tuple of names."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def rng(*parts: object) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(key64(*parts)))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective avalanche on uint64 arrays (wraps around by design)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def hash_uniform(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) float32 for integer lattice positions, a pure function of (ix, iy, salt)."""
    with np.errstate(over="ignore"):
        x = np.asarray(ix).astype(np.int64).astype(np.uint64) * _GOLDEN
        y = np.asarray(iy).astype(np.int64).astype(np.uint64)
        h = _mix(_mix(x ^ np.uint64(salt)) + y)
    return ((h >> np.uint64(40)).astype(np.float32)) * np.float32(1.0 / (1 << 24))


_TILE = 509  # prime, so the repeat never lines up with the 64-pixel (20 m) scene grid


def pixel_noise(col0: int, row0: int, height: int, width: int, salt: int) -> np.ndarray:
    """Standard-normal float32 noise for a window of the global pixel lattice.

    A 509 x 509 tile keyed by `salt`, repeated over the lattice: position-consistent like a full
    hash but about fifty times cheaper; the 160 m repeat is invisible under the textures.
    """
    tile = rng("pixel-noise", salt).standard_normal((_TILE, _TILE), dtype=np.float32)
    r, c = row0 % _TILE, col0 % _TILE
    reps_y = (r + height) // _TILE + 1
    reps_x = (c + width) // _TILE + 1
    return np.tile(tile, (reps_y, reps_x))[r : r + height, c : c + width]


def value_noise(
    col0: int, row0: int, height: int, width: int, spacing: int, salt: int
) -> np.ndarray:
    """Smooth noise in [-1, 1]: hashed values on a coarse global lattice, bilinearly interpolated.

    The lattice is anchored at global pixel 0, so any window of it is identical in every scene.
    """
    gx = np.arange(col0, col0 + width)
    gy = np.arange(row0, row0 + height)
    lx0, ly0 = np.floor_divide(gx, spacing), np.floor_divide(gy, spacing)
    fx = ((gx - lx0 * spacing) / spacing).astype(np.float32)
    fy = ((gy - ly0 * spacing) / spacing).astype(np.float32)
    ux = np.arange(lx0.min(), lx0.max() + 2)
    uy = np.arange(ly0.min(), ly0.max() + 2)
    lattice = hash_uniform(ux[None, :], uy[:, None], salt) * 2.0 - 1.0
    # Smoothstep weights hide the lattice's straight lines.
    fx = fx * fx * (3 - 2 * fx)
    fy = fy * fy * (3 - 2 * fy)
    cx = lx0 - ux[0]
    cy = ly0 - uy[0]
    top = lattice[cy][:, cx] * (1 - fx) + lattice[cy][:, cx + 1] * fx
    bottom = lattice[cy + 1][:, cx] * (1 - fx) + lattice[cy + 1][:, cx + 1] * fx
    return (top * (1 - fy)[:, None] + bottom * fy[:, None]).astype(np.float32)
