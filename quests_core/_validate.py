"""Input checks shared by the numerical API (one-line :class:`QuestsError` messages)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import QuestsError


def as_structure_list(structures) -> list:
    """Return ``structures`` (an ``ase.Atoms`` or an iterable of them) as a list."""
    from ase import Atoms

    if isinstance(structures, Atoms):
        return [structures]
    if structures is None or not isinstance(structures, Iterable):
        raise QuestsError("expected an ase.Atoms or an iterable of ase.Atoms")
    out = list(structures)
    if not out:
        raise QuestsError("no structures given")
    for i, atoms in enumerate(out):
        if not isinstance(atoms, Atoms):
            raise QuestsError(f"is a {type(atoms).__name__}, not an ase.Atoms", index=i)
    return out


def check_k_cutoff(k, cutoff) -> tuple[int, float]:
    if isinstance(k, bool) or not float(k).is_integer() or int(k) < 1:
        raise QuestsError(f"k must be an integer >= 1, got {k!r}")
    cutoff = float(cutoff)
    if not np.isfinite(cutoff) or cutoff <= 0:
        raise QuestsError(f"cutoff must be a finite number > 0 Å, got {cutoff!r}")
    return int(k), cutoff


def check_bandwidth(h) -> tuple[np.ndarray, bool]:
    """Return the bandwidths as a 1-D float64 array and whether ``h`` was a scalar."""
    arr = np.asarray(h, dtype=np.float64)
    scalar = arr.ndim == 0
    arr = np.atleast_1d(arr)
    if arr.ndim != 1 or arr.size == 0:
        raise QuestsError(f"bandwidth must be a number or a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise QuestsError(f"bandwidth h must be finite and > 0, got {h!r}")
    return arr, scalar


def check_descriptors(x, name: str = "x") -> np.ndarray:
    """A 2-D finite float array of descriptors (float32 kept, everything else float64)."""
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise QuestsError(f"{name} must be a 2-D descriptor array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise QuestsError(f"{name} has no descriptors (0 rows)")
    if arr.shape[1] == 0:
        raise QuestsError(f"{name} has descriptors of width 0")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(arr), axis=1))[0])
        raise QuestsError(f"{name} has NaN or Inf values (first in row {bad})")
    return arr


def check_pair(y, x) -> tuple[np.ndarray, np.ndarray]:
    y = check_descriptors(y, "test descriptors y")
    x = check_descriptors(x, "reference descriptors x")
    if y.shape[1] != x.shape[1]:
        raise QuestsError(
            f"descriptor widths differ: test has {y.shape[1]} columns, reference has "
            f"{x.shape[1]} (were they made with the same k and species?)"
        )
    return y, x
