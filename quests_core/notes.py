"""Notes about the input that every front end gives, in the same words.

Each function returns one line ("" when there is nothing to say) and takes the
front end's way out as ``remedy`` (a CLI option, or the dashboard's control), so the
CLI and the dashboard warn about the same things with the same facts:

- :func:`type_map_note`: a LAMMPS file whose numeric types are read as H, He, ...;
- :func:`narrow_bandwidth_note`: a run whose atoms are almost all novel against its
  own first frame at a fixed bandwidth (too narrow for the density);
- :func:`step_time_note`: a LAMMPS dump's times, made of its MD step numbers and an
  assumed step length.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "NOVEL_ADVICE_FRACTION",
    "InputWarning",
    "narrow_bandwidth_note",
    "self_reference_novelty",
    "step_time_note",
    "type_map_note",
]

#: Fraction of novel atoms (dH > 0) against a run's own first frame above which the
#: bandwidth is probably too small for the density (frames of one run in one state
#: should mostly lie inside each other).
NOVEL_ADVICE_FRACTION = 0.9


class InputWarning(UserWarning):
    """A note about how the input was read or what it implies (the CLI prints one line)."""


def type_map_note(path: str | os.PathLike,
                  type_map: Mapping[int, str] | Sequence[str] | str | None,
                  remedy: str, name: str | None = None) -> str:
    """A LAMMPS file whose atoms are named only by numeric type, read as H, He, ...
    (:func:`quests_core.io.lammps_type_warning`), with where the type map goes."""
    from quests_core.io import lammps_type_warning

    text = lammps_type_warning(path, type_map or None, name=name)
    return f"{text} {remedy}" if text else ""


def self_reference_novelty(frac_novel: Sequence[float], n_atoms: Sequence[int]) -> float:
    """Atom-weighted fraction of novel atoms of a run's frames after the first (the first
    is the reference itself); NaN for a run of one frame."""
    f = np.asarray(frac_novel, dtype=np.float64)[1:]
    n = np.asarray(n_atoms, dtype=np.float64)[1:]
    if n.sum() <= 0:
        return float("nan")
    return float(np.sum(f * n) / n.sum())


def narrow_bandwidth_note(source: str, novel: float, h: float, h_volume: float | None,
                          remedy: str, threshold: float = NOVEL_ADVICE_FRACTION) -> str:
    """A run compared with its own first frame at a fixed bandwidth ``h`` (1/Å) whose
    atoms are more than ``threshold`` novel: the kernel is probably too narrow for the
    density (water at h = 0.015). ``h_volume``: what the volume rule would give."""
    if not np.isfinite(novel) or novel <= threshold:
        return ""
    would = (f" (it would use h = {h_volume:.4g} 1/Å)"
             if h_volume is not None and np.isfinite(h_volume) else "")
    return (f"{source}: {100 * novel:.0f}% of the atoms are novel (dH > 0) against its own "
            f"first frame with h = {h:.4g} 1/Å; the bandwidth may be too small for this "
            f"density: {remedy}{would}.")


def step_time_note(name: str, timestep_fs: float, remedy: str) -> str:
    """A file whose frames record MD step numbers, not times (LAMMPS dumps): the times
    shown are step x ``timestep_fs`` (fs), an assumption the user may have to correct."""
    return (f"{name}: the frames record MD step numbers, not times: time = step x "
            f"{timestep_fs:g} fs; {remedy}")
