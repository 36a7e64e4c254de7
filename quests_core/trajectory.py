"""Per-frame statistics of a trajectory against a reference (SPEC section 3).

The one implementation of the per-frame curves used by the CLI ``trajectory``
and ``watch`` commands and by the dashboard's pipeline: H of each frame (exact,
or sampled for large frames through :func:`quests_core.sampling.frame_entropy`),
and the mean dH, max dH and fraction of atoms with dH > 0 against a reference.

Invariants
----------
- ``frame_statistics`` reads only the frame's and the reference's descriptors;
  its memory is O(n_frame) beyond the kernel blocks.
- ``per_frame_stats(dh, counts)`` equals, frame by frame, ``dh[a:b].mean()``
  and ``(dh[a:b] > 0).mean()`` (``counts`` all > 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import QuestsError
from .settings import DEFAULTS

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class FrameStats:
    """Statistics of one frame.

    Attributes
    ----------
    n_atoms : int
        Atoms of the frame.
    H, H_stderr : float
        Information entropy of the frame (nats) and its standard error (0 when exact).
    H_rows : int
        Rows evaluated against all atoms for H (``n_atoms`` when exact).
    mean_dH, max_dH : float
        Mean and largest dH of the frame's atoms against the reference (nats).
    frac_novel : float
        Fraction of the frame's atoms with dH > 0.
    """

    n_atoms: int
    H: float
    H_stderr: float
    H_rows: int
    mean_dH: float
    max_dH: float
    frac_novel: float

    @property
    def exact(self) -> bool:
        """Whether H is the exact value."""
        return self.H_rows >= self.n_atoms


def frame_statistics(
    x_frame: np.ndarray,
    x_ref: np.ndarray,
    h: float,
    *,
    h_frame: float | None = None,
    exact: bool = False,
    threshold: int | None = None,
    target_stderr: float | None = None,
    seed=DEFAULTS.seed,
    progress: Progress | None = None,
    **kernel_kw,
) -> tuple[FrameStats, np.ndarray]:
    """H of one frame and its atoms' dH against a reference.

    Parameters
    ----------
    x_frame : (n, d) array
        Descriptors of the frame.
    x_ref : (m, d) array
        Descriptors of the reference.
    h : float
        Bandwidth of dH (the reference's).
    h_frame : float, optional
        Bandwidth of the frame's own H (default ``h``).
    exact, threshold, target_stderr, seed
        As in :func:`quests_core.sampling.frame_entropy`.
    progress : callable, optional
        ``progress(stage, done_rows, total_rows)`` with stage ``"H"`` or ``"dH"``.
    **kernel_kw
        ``precision``, ``n_threads``, ``backend``, ``cancel``.

    Returns
    -------
    FrameStats, (n,) float64 array
        The statistics and the per-atom dH.
    """
    from .entropy import delta_entropy
    from .sampling import DEFAULT_TARGET_STDERR, frame_entropy

    x_frame = np.asarray(x_frame)
    if len(x_frame) == 0:
        raise QuestsError("a frame without atoms has no statistics")

    def stage(name):
        return None if progress is None else (lambda done, total: progress(name, done, total))

    est = frame_entropy(
        x_frame, h if h_frame is None else h_frame, exact=exact, threshold=threshold,
        target_stderr=DEFAULT_TARGET_STDERR if target_stderr is None else target_stderr,
        seed=seed, progress=stage("H"), **kernel_kw,
    )
    dh = np.asarray(delta_entropy(x_frame, x_ref, h, progress=stage("dH"), **kernel_kw),
                    dtype=np.float64)
    stats = FrameStats(
        n_atoms=len(x_frame), H=float(est.H), H_stderr=float(est.stderr), H_rows=int(est.m),
        mean_dH=float(dh.mean()), max_dH=float(dh.max()), frac_novel=float(np.mean(dh > 0)),
    )
    return stats, dh


def per_frame_stats(dh: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean dH and fraction of atoms with dH > 0 of every frame.

    Parameters
    ----------
    dh : (n_atoms,) array
        Per-atom dH, frames concatenated.
    counts : (n_frames,) int array
        Atoms per frame (all > 0).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != len(dh):
        raise QuestsError(f"{len(dh)} dH values for {int(counts.sum())} atoms")
    if len(counts) == 0:
        return np.zeros(0), np.zeros(0)
    if np.any(counts <= 0):
        raise QuestsError("every frame needs at least one atom")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sums = np.add.reduceat(np.asarray(dh, dtype=np.float64), starts)
    novel = np.add.reduceat((np.asarray(dh) > 0).astype(np.float64), starts)
    return sums / counts, novel / counts


#: Kernel pairs a run may cost against its own first frame (n_0 x all atoms) before a
#: reference is asked for: 1e10, about a minute on 2 cores.
SELF_REFERENCE_MAX_PAIRS = 1e10
#: Environment variable that overrides :data:`SELF_REFERENCE_MAX_PAIRS`.
SELF_REFERENCE_PAIRS_ENV = "QUESTS_SELF_REFERENCE_MAX_PAIRS"


def self_reference_max_pairs() -> float:
    """``$QUESTS_SELF_REFERENCE_MAX_PAIRS`` if set (a positive number), else the default."""
    import os

    text = os.environ.get(SELF_REFERENCE_PAIRS_ENV, "").strip()
    if not text:
        return SELF_REFERENCE_MAX_PAIRS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise QuestsError(f"${SELF_REFERENCE_PAIRS_ENV} must be a positive number, got {text!r}")
    return value


def self_reference_problem(source: str, first_atoms: int, total_atoms: int,
                           max_pairs: float | None = None, remedy: str | None = None) -> str:
    """Why a trajectory's first frame should not be its own reference ("" when it can be).

    Without a reference file, dH of every atom is taken against the first frame: n_0
    kernel pairs per atom, n_0 x N in all. Above ``max_pairs`` (default
    :func:`self_reference_max_pairs`) this is refused in one line that names the way out
    (``remedy``; default: the CLI's options), instead of a run that does not finish
    (4 frames of 256,000 atoms: 2.6e11 pairs).
    """
    pairs = float(first_atoms) * float(total_atoms)
    if pairs <= (self_reference_max_pairs() if max_pairs is None else max_pairs):
        return ""
    if remedy is None:
        remedy = (f"give a reference (-r REF, e.g. the training set), or -r {source} "
                  "--reference-index 0 to take frame 0 anyway")
    return (f"{source}: frame 0 has {first_atoms:,} atoms: as the reference of all "
            f"{total_atoms:,} atoms it would take {pairs:.2g} kernel pairs; {remedy}")
