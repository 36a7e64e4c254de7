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


#: largest k accepted: the descriptor is 2k - 1 wide and each thread keeps a k x k
#: scratch matrix (8 MB at k = 1024); the paper uses k = 32
MAX_K = 1024
#: cutoff radius range (Å): below 1e-3 Å no two real atoms are neighbours, and the
#: coordinate and density limits below are relative to the cutoff
MIN_CUTOFF = 1e-3
MAX_CUTOFF = 1e4
#: bandwidth range (Å^-1, the unit of descriptors): typical values are 0.005-0.1; inside
#: this range every kernel sum and dH stays finite for descriptors within MAX_DESCRIPTOR
MIN_BANDWIDTH = 1e-6
MAX_BANDWIDTH = 1e6
#: largest descriptor entry accepted (|value|): QUESTS descriptors are at most
#: 1 / eps = 1e15 (overlapping atoms); beyond 1e16 squared distances overflow float32
MAX_DESCRIPTOR = 1e16
#: squared distances between descriptors must stay within float32 range
_MAX_SQUARED_DISTANCE = 1e38


def _number(value, what: str) -> float:
    """``float(value)`` for a real number (or a numeric string); QuestsError otherwise."""
    if isinstance(value, bool):
        raise QuestsError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise QuestsError(f"{what} must be a number, got {_short(value)}") from None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(value, name: str, low: int = 1, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (numeric strings and integral floats accepted)."""
    v = float("nan") if isinstance(value, bool) else _number(value, name)
    if not np.isfinite(v) or not v.is_integer() or v < low or (high is not None and v > high):
        span = f">= {low}" if high is None else f"between {low} and {high}"
        raise QuestsError(f"{name} must be an integer {span}, got {_short(value)}")
    return int(v)


def check_k_cutoff(k, cutoff) -> tuple[int, float]:
    kf = _number(k, "k") if not isinstance(k, bool) else float("nan")
    if not np.isfinite(kf) or not kf.is_integer() or kf < 1:
        raise QuestsError(f"k must be an integer >= 1, got {_short(k)}")
    if kf > MAX_K:
        raise QuestsError(f"k must be an integer between 1 and {MAX_K}, got {_short(k)}")
    cutoff = _number(cutoff, "cutoff")
    if not np.isfinite(cutoff) or cutoff <= 0:
        raise QuestsError(f"cutoff must be a finite number > 0 Å, got {cutoff!r}")
    if not MIN_CUTOFF <= cutoff <= MAX_CUTOFF:
        raise QuestsError(
            f"cutoff must be between {MIN_CUTOFF:g} and {MAX_CUTOFF:g} Å, got {cutoff!r}"
        )
    return int(kf), cutoff


def check_bandwidth(h) -> tuple[np.ndarray, bool]:
    """Return the bandwidths as a 1-D float64 array and whether ``h`` was a scalar."""
    if isinstance(h, (str, bytes, bool)):
        h = _number(h, "bandwidth h")
    try:
        arr = np.asarray(h, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise QuestsError(
            f"bandwidth h must be a number or a 1-D array of numbers, got {_short(h)}"
        ) from None
    scalar = arr.ndim == 0
    arr = np.atleast_1d(arr)
    if arr.ndim != 1 or arr.size == 0:
        raise QuestsError(f"bandwidth must be a number or a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise QuestsError(f"bandwidth h must be finite and > 0, got {_short(h)}")
    if np.any(arr < MIN_BANDWIDTH) or np.any(arr > MAX_BANDWIDTH):
        bad = float(arr[(arr < MIN_BANDWIDTH) | (arr > MAX_BANDWIDTH)][0])
        raise QuestsError(
            f"bandwidth h = {bad:g} Å^-1 is out of range: it must be between "
            f"{MIN_BANDWIDTH:g} and {MAX_BANDWIDTH:g} Å^-1 (typical: 0.005-0.1)"
        )
    return arr, scalar


def check_descriptors(x, name: str = "x") -> np.ndarray:
    """A 2-D finite float array of descriptors (float32 kept, everything else float64)."""
    if isinstance(x, (str, bytes)):
        raise QuestsError(f"{name} must be a 2-D numeric descriptor array, got a string")
    try:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf" and arr.dtype != object:
            raise TypeError
        if arr.dtype != np.float32:
            arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError, OverflowError):
        raise QuestsError(
            f"{name} must be a 2-D numeric descriptor array, got {type(x).__name__}"
            + (f" of {np.asarray(x).dtype}" if hasattr(x, "dtype") else "")
        ) from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise QuestsError(f"{name} must be a 2-D descriptor array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise QuestsError(f"{name} has no descriptors (0 rows)")
    if arr.shape[1] == 0:
        raise QuestsError(f"{name} has descriptors of width 0")
    # two reductions, no temporary: NaN and Inf show up in the minimum or the maximum
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(arr), axis=1))[0])
        raise QuestsError(f"{name} has NaN or Inf values (first in row {bad})")
    if max(-lo, hi) > MAX_DESCRIPTOR:
        bad = int(np.flatnonzero(np.any(np.abs(arr) > MAX_DESCRIPTOR, axis=1))[0])
        raise QuestsError(
            f"{name} has values of magnitude {max(-lo, hi):.3g} (first in row {bad}); "
            f"descriptor entries must be within ±{MAX_DESCRIPTOR:g}"
        )
    if arr.shape[1] * (2.0 * max(-lo, hi)) ** 2 > _MAX_SQUARED_DISTANCE:
        raise QuestsError(
            f"{name}: {arr.shape[1]} columns of values up to {max(-lo, hi):.3g} give squared "
            f"distances beyond {_MAX_SQUARED_DISTANCE:g} (float32 range)"
        )
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
