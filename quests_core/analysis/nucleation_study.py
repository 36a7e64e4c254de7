"""The nucleation study of a trajectory against a solid reference, composed once.

What it holds
-------------
- :func:`nucleation_study`: per-atom dH of every frame against the solid
  reference, solid-like clusters frame by frame
  (:func:`quests_core.analysis.clusters.atoms_clusters`), the pooled frames
  (the pre-nucleation frames with their one critical band,
  :func:`quests_core.analysis.cnt.pre_nucleation_pool`, or given frames), their
  cluster-size distribution and its CNT fit; a frozen :class:`NucleationStudy`.
- :func:`refit`: the same study with the fit made again with other weights or
  another fit volume (pure, cheap: a 3-parameter linear least-squares fit).
- :func:`fit_distribution`: the CNT fit of a pooled distribution with its curve,
  or why there is none (:class:`NucleationFit`); the one rule both front ends
  show.

Both front ends call these: ``quests-dashboard nucleation`` prints the study and
the dashboard's pipeline (:func:`dashboard.pipeline._nucleation`) draws it; the
Nucleation tab's weights and fit-volume controls refit through the same fit.

Invariants
----------
- ``NucleationStudy`` and ``NucleationFit`` are frozen: a refit is a new object.
- ``band_min``/``band_max`` are the pooled band on undercooled frames (finite
  temperature below T_m), ``inf`` on the others, NaN everywhere without a band.
- The fit curve is given only for a reliable fit (``NucleationFit.reliable``).

Memory bounds
-------------
The per-atom dH and cluster labels of the trajectory (two arrays of its atoms)
and one frame's structure at a time (``structures`` is iterated once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quests_core.errors import Cancelled, QuestsError

from . import clusters as cl
from . import cnt

__all__ = ["NucleationFit", "NucleationStudy", "fit_distribution", "nucleation_study", "refit"]

#: Points of the CNT fit curve drawn over the pooled cluster sizes.
FIT_CURVE_POINTS = 100
#: :func:`refit`'s "keep the study's own fit volume".
_OWN: Any = object()


@dataclass(frozen=True)
class NucleationFit:
    """The CNT fit of a pooled cluster-size distribution, or why there is none.

    Attributes
    ----------
    weights : str
        One of :data:`quests_core.analysis.cnt.FIT_WEIGHTS`.
    v_atom : float
        Volume per atom (Å^3/atom) that sizes the fit's clusters (NaN without constants).
    fit : CNTFit or None
        The fitted parameters (also when they are not physical, see ``problem``).
    skipped : str
        Why no fit was tried (no constants, no pooled temperature); "" otherwise.
    failed : str
        The fit's own error (e.g. too few cluster sizes); "" otherwise.
    problem : str
        Why the fitted numbers are not physical (:meth:`CNTFit.problem`); "" otherwise.
    curve : (sizes, clusters per frame) or None
        The fitted distribution on :data:`FIT_CURVE_POINTS` sizes (reliable fits only).
    """

    weights: str
    v_atom: float
    fit: cnt.CNTFit | None = None
    skipped: str = ""
    failed: str = ""
    problem: str = ""
    curve: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def reliable(self) -> bool:
        """A fit was made and its numbers are physical."""
        return self.fit is not None and not self.problem


def check_weights(weights: str) -> str:
    """``weights`` when it is one of :data:`~quests_core.analysis.cnt.FIT_WEIGHTS`."""
    if weights not in cnt.FIT_WEIGHTS:
        raise QuestsError(f"unknown CNT fit weights {weights!r}; use one of "
                          f"{', '.join(cnt.FIT_WEIGHTS)}")
    return weights


def check_fit_volume(v_atom: float | None) -> float | None:
    """``v_atom`` (Å^3/atom) when it is None or finite and positive."""
    if v_atom is not None and not (np.isfinite(v_atom) and v_atom > 0):
        raise QuestsError(f"the fit's volume per atom must be positive, got {v_atom}")
    return v_atom


def fit_distribution(
    sizes: np.ndarray,
    counts: np.ndarray,
    n_frames: int,
    temperature: float,
    *,
    v_atom: float,
    weights: str = cnt.FIT_WEIGHTS[0],
) -> NucleationFit:
    """The CNT fit of a distribution pooled over ``n_frames`` at ``temperature`` (K).

    ``v_atom`` NaN means no CNT constants and ``temperature`` NaN no pooled frame
    below the melting point: then the fit is ``skipped`` with the reason.
    Errors of :func:`~quests_core.analysis.cnt.fit_cnt_distribution` become ``failed``.
    """
    weights = check_weights(weights)
    out = NucleationFit(weights=weights, v_atom=float(v_atom))
    if not np.isfinite(v_atom):
        return dataclasses.replace(out, skipped="no CNT constants: CNT fit skipped")
    if not np.isfinite(temperature):
        return dataclasses.replace(out, skipped="no temperature below the melting point in "
                                                "the trajectory: CNT fit skipped")
    sizes = np.asarray(sizes)
    try:
        fit = cnt.fit_cnt_distribution(sizes, counts, temperature, v_atom=v_atom,
                                       weights=weights)
    except (QuestsError, RuntimeError, ValueError) as exc:
        return dataclasses.replace(out, failed=str(exc).splitlines()[0])
    problem = fit.problem()
    if problem:  # numbers outside their physical bounds are not shown as values
        return dataclasses.replace(out, fit=fit, problem=problem)
    grid = np.linspace(max(1, sizes.min()), sizes.max(), FIT_CURVE_POINTS)
    return dataclasses.replace(out, fit=fit,
                               curve=(grid, np.exp(fit.log_counts(grid)) / max(n_frames, 1)))


@dataclass(frozen=True)
class NucleationStudy:
    """Solid-like clusters of a trajectory and CNT the paper's way (:func:`nucleation_study`).

    Attributes
    ----------
    h : float
        Bandwidth of dH against the solid reference (1/Å).
    dh : (n_atoms,) float64
        dH of every atom of every frame against the solid reference (nats).
    n_atoms : (n_frames,) int64
        Atoms of each frame (rows of ``dh`` frame by frame).
    clusters : TrajectoryClusters
        Solid-like clusters of every frame (``largest``, ``n_solid``, ``labels()``).
    threshold, cluster_cutoff, method
        Solid-like if dH <= threshold; clusters within ``cluster_cutoff`` Å; components.
    temperature : (n_frames,) float64
        K, NaN where unknown.
    constants : CNTConstants or None
        Material constants (None: no band and no fit, ``note`` says why).
    note : str
        One line on what could not be done (e.g. why there are no constants).
    pooled : (m,) int64
        Frames pooled in the distribution, band and fit.
    pre_nucleation : bool
        Whether ``pooled`` are the pre-nucleation frames (else given frames).
    band : CriticalBand or None
        The one critical band at the pooled mean temperature (None without one).
    band_min, band_max : (n_frames,) float64
        The band on undercooled frames, ``inf`` elsewhere, NaN without a band.
    distribution : SizeDistribution
        Cluster sizes of the pooled frames.
    weights : str
        The fit's weights.
    fit_v_atom : float or None
        Volume per atom chosen for the fit's clusters (None: the constants').
    fit : NucleationFit
        The CNT fit of ``distribution`` at ``t_pooled``.
    """

    h: float
    dh: np.ndarray
    n_atoms: np.ndarray
    clusters: cl.TrajectoryClusters
    threshold: float
    cluster_cutoff: float
    method: str
    temperature: np.ndarray
    constants: cnt.CNTConstants | None
    note: str
    pooled: np.ndarray
    pre_nucleation: bool
    band: cnt.CriticalBand | None
    band_min: np.ndarray
    band_max: np.ndarray
    distribution: cl.SizeDistribution
    weights: str
    fit_v_atom: float | None
    fit: NucleationFit

    @property
    def largest(self) -> np.ndarray:
        """Largest solid-like cluster of each frame (atoms)."""
        return np.asarray(self.clusters.largest)

    @property
    def n_solid(self) -> np.ndarray:
        """Solid-like atoms of each frame."""
        return np.asarray(self.clusters.n_solid)

    @property
    def mean_dh(self) -> np.ndarray:
        """Mean dH of each frame's atoms (nats)."""
        return np.array([float(np.mean(d)) for d in self.frame_dh()])

    def frame_dh(self) -> list[np.ndarray]:
        """dH of each frame's atoms."""
        return np.split(self.dh, np.cumsum(self.n_atoms)[:-1])

    @property
    def t_pooled(self) -> float:
        """Mean temperature of the pooled frames (K; NaN without a band)."""
        return float("nan") if self.band is None else float(self.band.temperature[0])

    @property
    def critical_band(self) -> tuple[float, float]:
        """(lower, upper) critical size of the pooled band (atoms; NaN without one)."""
        if self.band is None:
            return (float("nan"), float("nan"))
        return (float(self.band.n_min[0]), float(self.band.n_max[0]))

    def fit_volume(self) -> float:
        """Volume per atom that sizes the fit's clusters: the chosen one, else the
        constants' fit volume (NaN without constants)."""
        if self.fit_v_atom is not None:
            return float(self.fit_v_atom)
        return float("nan") if self.constants is None else float(self.constants.v_fit)


def _pool(largest, temperature, constants, frames):
    """(pooled frames, whether pre-nucleation, band or None)."""
    n = len(largest)
    if constants is None:
        pool = np.arange(n, dtype=np.int64) if frames is None else np.asarray(frames, np.int64)
        return pool, frames is None, None
    if frames is None:
        pre, band = cnt.pre_nucleation_pool(largest, temperature, constants)
        return np.asarray(pre, dtype=np.int64), True, band
    pool = np.asarray(list(frames), dtype=np.int64)
    band = None
    if len(pool) and np.all(np.isfinite(temperature[pool])):
        band = cnt.pooled_critical_band(temperature, constants.gamma_range, pool,
                                        **constants.kwargs())
    return pool, False, band


def nucleation_study(
    x: np.ndarray,
    x_ref: np.ndarray,
    structures: Iterable,
    h: float,
    *,
    temperature: Sequence[float] | np.ndarray,
    constants: cnt.CNTConstants | None,
    note: str = "",
    frames: Sequence[int] | None = None,
    threshold: float = 0.0,
    cluster_cutoff: float = cl.DEFAULT_CLUSTER_CUTOFF,
    method: str = cl.CLUSTER_METHODS[0],
    weights: str = cnt.FIT_WEIGHTS[0],
    fit_v_atom: float | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: Any = None,
    **kernel_kw: Any,
) -> NucleationStudy:
    """Solid-like clusters of a trajectory against a solid reference, and CNT.

    Parameters
    ----------
    x : (n_atoms, d) array
        Descriptors of every atom of every frame, frame by frame.
    x_ref : (m, d) array
        Descriptors of the solid reference (same k, cutoff, species).
    structures : iterable of ase.Atoms
        The frames (iterated once, in the order of ``x``).
    h : float
        Kernel bandwidth (1/Å).
    temperature : (n_frames,) array
        K per frame, NaN where unknown.
    constants : CNTConstants or None
        :func:`quests_core.analysis.cnt.cnt_constants` of the trajectory; None: no
        band and no fit (``note`` says why in one line).
    frames : sequence of int, optional
        Frames pooled; default the pre-nucleation frames and their one band
        (:func:`quests_core.analysis.cnt.pre_nucleation_pool`).
    threshold, cluster_cutoff, method
        Solid-like if dH <= ``threshold``; cluster edge in Å; ``"connected"`` or
        ``"biconnected"`` components.
    weights, fit_v_atom
        The CNT fit's weights and the volume per atom of its clusters (None: the
        constants' :attr:`~quests_core.analysis.cnt.CNTConstants.v_fit`).
    progress : callable, optional
        ``progress(step, done, total)``: step ``"dH"`` (rows of the kernel), then
        ``"clusters"`` (atoms of the frames clustered).
    cancel : object with ``is_set()``, optional
        Raises :class:`~quests_core.errors.Cancelled` when set (kernel blocks, frames).
    **kernel_kw
        ``precision``, ``backend``, ``n_threads`` of :func:`quests_core.delta_entropy`.

    Raises
    ------
    QuestsError
        When the frames do not match the descriptors, or pooled frames are out of range.
    """
    import quests_core as qc

    weights = check_weights(weights)
    fit_v_atom = check_fit_volume(fit_v_atom)
    if method not in cl.CLUSTER_METHODS:
        raise QuestsError(f"unknown cluster method {method!r}; use one of {cl.CLUSTER_METHODS}")
    kernel_progress = None if progress is None else (lambda d, t: progress("dH", d, t))
    dh = np.asarray(qc.delta_entropy(x, x_ref, h, progress=kernel_progress, cancel=cancel,
                                     **kernel_kw), dtype=np.float64)
    found, counts, start = [], [], 0
    for i, atoms in enumerate(structures):
        if cancel is not None and cancel.is_set():
            raise Cancelled("computation cancelled")
        stop = start + len(atoms)
        if stop > len(dh):
            raise QuestsError(f"frame has {len(atoms)} atoms beyond the {len(dh)} rows of "
                              "descriptors", index=i)
        found.append(cl.atoms_clusters(atoms, dh[start:stop] <= threshold,
                                       cutoff=cluster_cutoff, method=method))
        counts.append(len(atoms))
        start = stop
        if progress is not None:
            progress("clusters", start, len(dh))
    if start != len(dh):
        raise QuestsError(f"the frames have {start} atoms but the descriptors {len(dh)} rows")
    clusters = cl.TrajectoryClusters.from_clusters(found)
    t = np.asarray(temperature, dtype=float).ravel()
    if len(t) != len(found):
        raise QuestsError(f"{len(t)} temperatures for {len(found)} frames")
    largest = np.asarray(clusters.largest)
    if frames is not None:
        for f in frames:
            if not 0 <= int(f) < len(found):
                raise QuestsError(f"pooled frame {f} is out of range ({len(found)} frames)")
    pool, pre, band = _pool(largest, t, constants, frames)
    band_min = np.full(len(t), np.nan)
    band_max = np.full(len(t), np.nan)
    if band is not None:
        undercooled = np.isfinite(t) & (t < constants.t_melt)
        band_min = np.where(undercooled, float(band.n_min[0]), np.inf)
        band_max = np.where(undercooled, float(band.n_max[0]), np.inf)
    dist = cl.cluster_size_distribution(clusters.clusters, pool)
    study = NucleationStudy(
        h=float(h), dh=dh, n_atoms=np.asarray(counts, dtype=np.int64), clusters=clusters,
        threshold=float(threshold), cluster_cutoff=float(cluster_cutoff), method=method,
        temperature=t, constants=constants, note=note, pooled=pool, pre_nucleation=pre,
        band=band, band_min=band_min, band_max=band_max, distribution=dist,
        weights=weights, fit_v_atom=fit_v_atom, fit=NucleationFit(weights, float("nan")),
    )
    return refit(study)


def refit(study: NucleationStudy, weights: str | None = None,
          fit_v_atom: Any = _OWN) -> NucleationStudy:
    """``study`` with its CNT fit made with ``weights`` (default: its own) and its
    clusters sized with ``fit_v_atom`` Å^3/atom (``None``: the constants' fit volume;
    default: its own). A new object; ``study`` is unchanged."""
    weights = check_weights(weights or study.weights)
    v = check_fit_volume(study.fit_v_atom if fit_v_atom is _OWN else fit_v_atom)
    out = dataclasses.replace(study, weights=weights, fit_v_atom=v)
    dist = study.distribution
    v_fit = out.fit_volume() if study.constants is not None else float("nan")
    fit = fit_distribution(dist.sizes, dist.counts, dist.n_frames, study.t_pooled,
                           v_atom=v_fit, weights=weights)
    return dataclasses.replace(out, fit=fit)
