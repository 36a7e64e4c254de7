"""The dashboard's computation: load files, descriptors, dH, H, learning curves, overlap.

:func:`run_pipeline` is a plain function (used directly by the tests). The
server runs it in a :class:`ComputeJob`, by default in a separate worker
process so that the Numba kernels (which hold the GIL) never freeze the
server's event loop, i.e. never freeze other browser sessions. Progress comes
back over a queue; cancellation is an Event checked between blocks (the core
functions accept ``cancel=``), with a hard stop of the worker as a fallback.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue as queue_mod
import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError

from .state import (
    FileSpec,
    LearningResult,
    NucleationResult,
    OverlapResult,
    Results,
)

ProgressFn = Callable[[float, str], None]

#: Atoms per descriptor / dH block (progress and cancellation granularity).
CHUNK_ATOMS = 20_000
#: Most jobs running at once in this server (others wait, shown as queued).
MAX_JOBS = max(2, min(4, os.cpu_count() or 2))
_JOB_SLOTS = threading.BoundedSemaphore(MAX_JOBS)
#: Niceness added to worker processes (the server's event loop keeps priority).
WORKER_NICE = 5
_CACHE_LOCK = threading.Lock()
_CACHE = None


class Cancelled(Exception):
    """Raised inside the pipeline when the user cancelled."""


try:  # the core's own cancellation exception, raised from inside its kernels
    from quests_core.errors import Cancelled as CoreCancelled
except ImportError:  # pragma: no cover - older core
    CoreCancelled = Cancelled


# ----------------------------------------------------------------------------
# small pure helpers
# ----------------------------------------------------------------------------


def learning_sizes(n: int, max_n: int, n_points: int = 12, smallest: int = 10) -> np.ndarray:
    """Log-spaced subset sizes from ``smallest`` to ``min(n, max_n)`` (unique ints)."""
    top = int(min(n, max_n))
    if top < smallest:
        return np.zeros(0, dtype=np.int64)
    sizes = np.unique(np.geomspace(smallest, top, n_points).round().astype(np.int64))
    return sizes[sizes <= top]


def per_frame_stats(
    dh: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
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
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if len(starts) == 0:
        return np.zeros(0), np.zeros(0)
    sums = np.add.reduceat(np.asarray(dh, dtype=np.float64), starts)
    novel = np.add.reduceat((np.asarray(dh) > 0).astype(np.float64), starts)
    return sums / counts, novel / counts


def sample_rows(n: int, max_n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted random rows (all rows when ``n <= max_n``)."""
    if n <= max_n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_n, replace=False))


def unique_names(paths: list[str]) -> list[str]:
    """Short display names, one per entry and all different.

    File names; on clashes the parent folder is added; entries that still
    clash (the same file chosen twice, e.g. as reference and as trajectory)
    are numbered in order: ``a.xyz``, ``a.xyz #2``, ``a.xyz #3``.
    """
    names = [Path(p).name for p in paths]
    if len(set(names)) != len(names):
        names = [str(Path(*Path(p).parts[-2:])) for p in paths]
    out: list[str] = []
    for name in names:
        unique, n = name, 2
        while unique in out:
            unique, n = f"{name} #{n}", n + 1
        out.append(unique)
    return out


# ----------------------------------------------------------------------------
# the pipeline
# ----------------------------------------------------------------------------


@dataclass
class _Loaded:
    spec: FileSpec
    dataset: Any
    x: np.ndarray | None = None


class _Progress:
    """Maps stage-local progress onto 0..1 and checks for cancellation.

    ``stage(lo, hi, text)`` gives a step the part ``lo..hi`` of the bar; ``prog(f)``
    moves within it (``prog(f, text)`` also changes the text shown until the next
    stage). :meth:`span` turns a part of the stage into the ``progress(done, total)``
    callback that the core's entropy functions call after every block of rows, so
    long steps move the bar instead of sitting still.

    The class attributes are a rough cost model of the pipeline's steps (seconds on
    2 cores, measured on the bundled Cu data; only their ratios matter):
    :meth:`plan` sizes the stages in proportion to the expected cost.
    """

    #: reading extxyz with ASE, per byte of file
    READ_PER_BYTE = 1.2e-7
    #: descriptors per atom at k = 32 (the cost grows as k^2)
    DESCRIPTOR_PER_ATOM = 8e-6
    #: one kernel term (one test row against one reference row)
    KERNEL_PER_PAIR = 2.5e-9
    #: fixed cost of one call of a core entropy function (thread pools, BLAS limits)
    CALL = 1e-3
    #: solid-like clusters per atom of a trajectory (nucleation)
    CLUSTER_PER_ATOM = 2e-5

    def __init__(self, report: ProgressFn | None, cancel: threading.Event | Any | None):
        self.report = report
        self.cancel = cancel
        self.lo, self.hi = 0.0, 1.0
        self.text = ""

    def stage(self, lo: float, hi: float, text: str) -> None:
        self.check()
        self.lo, self.hi, self.text = lo, hi, text
        self(0.0)

    def __call__(self, fraction: float, text: str | None = None) -> None:
        if text:
            self.text = text
        if self.report is not None:
            frac = self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0)
            self.report(frac, self.text)

    def span(self, lo: float = 0.0, hi: float = 1.0) -> Callable[[int, int], None]:
        """``progress(done, total)`` moving the bar over ``lo..hi`` of the current stage."""

        def progress(done: int, total: int) -> None:
            self(lo + (hi - lo) * min(done / max(total, 1), 1.0))

        return progress

    @staticmethod
    def plan(costs: list[float], lo: float = 0.0, hi: float = 1.0) -> list[tuple[float, float]]:
        """Consecutive parts of ``lo..hi``, one per step, in proportion to ``costs``."""
        costs = [max(float(c), 0.0) for c in costs]
        total = sum(costs)
        if total <= 0:
            costs, total = [1.0] * len(costs), float(max(len(costs), 1))
        edges = lo + (hi - lo) * np.concatenate([[0.0], np.cumsum(costs)]) / total
        edges[-1] = hi
        return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("computation cancelled")


def _descriptor_cache():
    """The shared on-disk descriptor cache, if quests_core provides one."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            try:
                from quests_core.cache import DescriptorCache
            except ImportError:
                _CACHE = False
            else:
                try:
                    _CACHE = DescriptorCache()
                except Exception:  # noqa: BLE001 - no cache is fine, it only saves time
                    _CACHE = False
        return _CACHE or None


def _compute_descriptors(ds, k: int, cutoff: float, prog: _Progress, n_threads,
                         name: str | None = None) -> np.ndarray:
    """Descriptors of a dataset (through the descriptor cache when there is one); an error
    about a structure names the file (``name``, else the path it was read from) and its
    frame in that file."""
    try:
        return _descriptors_with_progress(ds, k, cutoff, prog, n_threads)
    except QuestsError as exc:
        raise _located(exc, name) from None


def _located(exc: QuestsError, name: str | None) -> QuestsError:
    """``exc`` naming the file by its display name ``name`` (not the server path)."""
    if name is None or exc.source == name:
        return exc
    if exc.source is None:
        return exc.located(source=name)
    index = None if exc.detail.startswith("frame ") else exc.index
    return QuestsError(exc.detail, source=name, index=index)


def _descriptors_with_progress(ds, k: int, cutoff: float, prog: _Progress,
                               n_threads) -> np.ndarray:
    from quests_core import descriptors
    from quests_core.io import locate_error

    n = max(ds.n_atoms, 1)
    cache = _descriptor_cache()
    counted = [0]

    def by_structure(structures):
        """``descriptors``' callback: the bar moves (and cancels) after every structure."""
        base, ends = counted[0], np.cumsum([len(a) for a in structures])

        def progress(done: int, total: int) -> None:
            prog.check()
            prog((base + ends[done - 1]) / n)

        return progress

    if cache is not None:

        def compute(structures, k, cutoff, species=None):
            prog.check()
            try:
                x = descriptors(structures, k=k, cutoff=cutoff, species=species,
                                n_threads=n_threads, progress=by_structure(structures))
            except QuestsError as exc:  # "structure i" of this chunk -> file and frame
                raise locate_error(exc, structures) from None
            counted[0] += len(x)
            prog(counted[0] / n)
            return x

        return np.asarray(cache.get_or_compute(ds, k=k, cutoff=cutoff, compute=compute))
    parts = []
    for _, chunk in ds.iter_chunks(max_atoms=CHUNK_ATOMS):
        prog.check()
        try:
            parts.append(descriptors(chunk, k=k, cutoff=cutoff, n_threads=n_threads,
                                     progress=by_structure(chunk)))
        except QuestsError as exc:
            raise locate_error(exc, chunk) from None
        counted[0] += sum(len(a) for a in chunk)
        prog(counted[0] / n)
    return np.concatenate(parts) if parts else np.zeros((0, 2 * k - 1))


def _delta(y: np.ndarray, x: np.ndarray, h: float, prog: _Progress, n_threads,
           lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """dH(y | x) with progress (over ``lo..hi`` of the current stage) and cancellation."""
    from quests_core import delta_entropy

    return np.asarray(
        delta_entropy(y, x, h, n_threads=n_threads, progress=prog.span(lo, hi),
                      cancel=prog.cancel),
        dtype=np.float64,
    )


def _load(specs: list[FileSpec], prog: _Progress) -> list[_Loaded]:
    from quests_core.dataset import Dataset

    loaded = []
    for i, spec in enumerate(specs):
        prog(i / max(len(specs), 1), f"Reading {spec.name}")
        prog.check()
        ds = Dataset.from_files(
            spec.path, index=spec.index or ":", name=spec.name,
            type_map=getattr(spec, "type_map", "") or None,
            timestep_fs=getattr(spec, "timestep_fs", None),
        )
        if len(ds) == 0:
            raise QuestsError(f"{spec.name}: no structures in the selected frames")
        if spec.label:
            ds.frames["label"] = spec.label
        loaded.append(_Loaded(spec, ds))
    prog(1.0)
    return loaded


def _choose_bandwidth(settings: dict, loaded: list[_Loaded]) -> float:
    if settings.get("bandwidth_mode", "fixed") == "fixed":
        return float(settings["bandwidth"])
    from quests_core import bandwidth_from_volume

    refs = [item for item in loaded if item.spec.role == "reference"] or loaded
    vols = np.concatenate([item.dataset.frames["volume_per_atom"].to_numpy(float) for item in refs])
    vols = vols[np.isfinite(vols)]
    if len(vols) == 0:
        names = ", ".join(item.spec.name for item in refs)
        raise QuestsError(f"{names}: the volume rule needs periodic cells (no volume per atom)")
    return float(bandwidth_from_volume(float(np.mean(vols))))


#: Fraction of a trajectory's atoms with dH > 0 above which the fixed bandwidth is
#: probably too small for the density (see :func:`bandwidth_advice`).
NOVEL_ADVICE_FRACTION = 0.9


def bandwidth_advice(
    frames: pd.DataFrame,
    bandwidth_mode: str,
    h: float,
    self_reference: bool,
    h_volume: float | None = None,
    threshold: float = NOVEL_ADVICE_FRACTION,
) -> list[str]:
    """Notes suggesting the volume rule when almost every atom of a run is novel
    against its own first frame.

    Only runs compared with their own first frame (no reference file) are
    judged: frames of one run in one state should mostly lie inside each other,
    so more than ``threshold`` novel atoms there means the kernel is too narrow
    for the density (e.g. water at h = 0.015). Against a reference file a high
    novelty is the finding itself (another phase, a failed run), not a sign of
    a bad bandwidth, so it gets no note.

    Parameters
    ----------
    frames : DataFrame
        Per-frame results with ``source``, ``role``, ``n_atoms`` and
        ``frac_novel`` (fraction of the frame's atoms with dH > 0), frames of
        one file in file order.
    bandwidth_mode : str
        ``"fixed"`` or ``"volume rule"``; only a fixed bandwidth gets advice.
    h : float
        The bandwidth used (1/Å).
    self_reference : bool
        True when no reference file was chosen, so each file was compared with
        its own first frame (that frame is left out of the fraction); False
        gives no notes.
    h_volume : float, optional
        The bandwidth the volume rule would give, quoted in the note.
    threshold : float
        Fraction of novel atoms above which a file gets a note (default 0.9).

    Returns
    -------
    list of str
        One note per trajectory or test file whose atoms are more than
        ``threshold`` novel.
    """
    if bandwidth_mode != "fixed" or not self_reference or frames.empty:
        return []
    notes = []
    for source, rows in frames.groupby("source", sort=False):
        if rows["role"].iat[0] not in ("trajectory", "test"):
            continue
        rows = rows.iloc[1:]
        n = rows["n_atoms"].to_numpy(np.float64)
        if n.sum() <= 0:
            continue
        novel = float(np.sum(rows["frac_novel"].to_numpy(np.float64) * n) / n.sum())
        if novel > threshold:
            suggestion = (f" (it would use h = {h_volume:.4g} 1/Å)"
                          if h_volume is not None and np.isfinite(h_volume) else "")
            notes.append(
                f"{source}: {100 * novel:.0f}% of the atoms are novel (dH > 0) against its "
                f"own first frame with h = {h:.4g} 1/Å; the bandwidth may be too small for "
                f"this density: try Bandwidth 'volume rule'{suggestion}."
            )
    return notes


def type_map_warning(spec: FileSpec) -> str:
    """The one-line warning for a chosen LAMMPS file whose numeric types will be read as H,
    He, ... and where its type map goes ("" when the species are known)."""
    from quests_core.io import lammps_type_warning

    text = lammps_type_warning(spec.path, getattr(spec, "type_map", "") or None,
                               name=spec.name)
    return text + " in the files table's 'types' column." if text else ""


def _file_warnings(loaded: list[_Loaded]) -> list[str]:
    """Warnings about how files were read: LAMMPS types read as H, He, ...; a last frame
    cut short (a trajectory still being written) skipped."""
    out = []
    for item in loaded:
        spec = item.spec
        text = type_map_warning(spec)
        if text:
            out.append(text)
        for _path, frame, reason in getattr(item.dataset, "skipped_frames", []):
            out.append(f"{spec.name}: frame {frame} skipped, {reason} (the last frame of a "
                       "file still being written?)")
    return out


def _atoms_frame(item: _Loaded, structure_offset: int, dh: np.ndarray) -> pd.DataFrame:
    """Compact per-atom table of one file (float32 coordinates, categorical strings)."""
    table = item.dataset.atoms_table(positions=True)
    out: dict[str, Any] = {
        "structure": (table["structure"].to_numpy(np.int64) + structure_offset).astype(np.int32),
        "frame": table["frame"].to_numpy(np.int32),
        "time": table["time"].to_numpy(np.float32),
        "label": pd.Categorical(table["label"].astype(str)),
        "atom": table["atom"].to_numpy(np.int32),
        "species": pd.Categorical(table["species"]),
        "x": table["x"].to_numpy(np.float32),
        "y": table["y"].to_numpy(np.float32),
        "z": table["z"].to_numpy(np.float32),
        "source": pd.Categorical([item.spec.name] * len(table)),
        "role": pd.Categorical([item.spec.role] * len(table)),
        "dH": dh.astype(np.float32),
    }
    skip = set(out) | {"generation"}
    for column in table.columns:
        if column not in skip and pd.api.types.is_numeric_dtype(table[column]):
            out[column] = table[column].to_numpy(np.float32)
    error = force_error(item.dataset.arrays)
    if error is not None and "force_error" not in out:
        out["force_error"] = error.astype(np.float32)
    return pd.DataFrame(out)


def force_error(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """||F_a - F_b|| per atom (eV/Å) when a file holds exactly two force arrays.

    Files with forces from two models (for example ``forces_emt`` and
    ``forces_model``) get a per-atom force error to plot against dH.
    """
    from quests_core.analysis.uncertainty import force_errors

    keys = sorted(k for k, v in arrays.items()
                  if k.startswith("forces") and v.ndim == 2 and v.shape[1] == 3)
    if len(keys) != 2:
        return None
    return force_errors(arrays[keys[0]], arrays[keys[1]])


def _learning(
    loaded: list[_Loaded], h: float, settings: dict, prog: _Progress, n_threads
) -> dict[str, LearningResult]:
    from quests_core import fit_asymptote, learning_curve

    out: dict[str, LearningResult] = {}
    items = [it for it in loaded if it.x is not None and len(it.x) >= 20]
    repeats = int(settings["learning_repeats"])
    all_sizes = [learning_sizes(len(it.x), settings["learning_max_n"]) for it in items]
    # H of a subset of n rows costs n^2 kernel terms: the bar follows that, not the count
    costs = [_learning_cost(sizes, repeats) for sizes in all_sizes]
    for item, sizes, (a, b) in zip(items, all_sizes, _Progress.plan(costs), strict=True):
        prog(a, f"Learning curve of {item.spec.name}")
        prog.check()
        if len(sizes) < 2:
            continue
        done = np.cumsum(np.repeat(sizes.astype(np.float64) ** 2 + _CALL_PAIRS, repeats))
        done /= done[-1]

        def progress(i, total, a=a, b=b, done=done):
            prog(a + (b - a) * done[min(i, len(done)) - 1])

        lc = learning_curve(
            item.x, sizes, h=h, repeats=repeats, seed=settings["seed"],
            progress=progress, cancel=prog.cancel,
        )
        res = LearningResult(
            name=item.spec.name,
            sizes=np.asarray(lc.sizes),
            mean=np.asarray(lc.mean),
            std=np.asarray(lc.std),
            log_n=np.asarray(lc.log_n),
            n_total=len(item.x),
        )
        try:
            fit = fit_asymptote(lc.sizes, lc.mean)
            res.asymptote = float(fit.a)
            res.gap = np.asarray(fit.gap, dtype=float)
        except (QuestsError, RuntimeError, ValueError) as exc:
            res.fit_error = str(exc).splitlines()[0]
        out[item.spec.name] = res
    prog(1.0)
    return out


def _learning_cost(sizes: np.ndarray, repeats: int) -> float:
    """Kernel terms of a learning curve (``repeats`` entropies of each subset size),
    each call counted with its fixed cost."""
    return float(repeats * np.sum(np.asarray(sizes, dtype=np.float64) ** 2 + _CALL_PAIRS)) \
        if len(sizes) >= 2 else 0.0


def _overlap_groups(
    loaded: list[_Loaded], frames: pd.DataFrame, grouping: str
) -> dict[str, np.ndarray]:
    """Descriptor rows of every group (by file or by label), in order of appearance."""
    x_all = np.concatenate([it.x for it in loaded])
    atom_rows = np.repeat(frames[grouping].to_numpy(), frames["n_atoms"].to_numpy())
    groups: dict[str, np.ndarray] = {}
    for value in pd.unique(frames[grouping]):
        if grouping == "label" and value == "":
            continue  # unlabelled structures form no group
        groups[str(value)] = x_all[atom_rows == value]
    return groups


def overlap_matrix(
    groups: dict[str, np.ndarray],
    h: float,
    max_n: int,
    rng: np.random.Generator,
    prog: _Progress,
    n_threads=None,
    grouping: str = "source",
) -> OverlapResult:
    """overlap(row | column) for every ordered pair of groups (sampled to ``max_n`` rows)."""
    from quests_core import delta_entropy

    names = list(groups)
    sampled = {name: x[sample_rows(len(x), max_n, rng)] for name, x in groups.items()}
    n = len(names)
    matrix = np.zeros((n, n))
    delta: dict[tuple[int, int], np.ndarray] = {}
    # every pair costs rows x columns kernel terms; the bar moves inside each pair too
    spans = iter(_Progress.plan([len(sampled[r]) * len(sampled[c]) + _CALL_PAIRS
                                 for r in names for c in names]))
    for i, row in enumerate(names):
        for j, col in enumerate(names):
            prog.check()
            a, b = next(spans)
            dh = np.asarray(
                delta_entropy(sampled[row], sampled[col], h, n_threads=n_threads,
                              progress=prog.span(a, b), cancel=prog.cancel),
                dtype=np.float64,
            )
            delta[(i, j)] = dh.astype(np.float32)
            matrix[i, j] = float(np.mean(dh <= 0))
            prog(b)
    return OverlapResult(
        grouping=grouping,
        names=names,
        matrix=matrix,
        delta=delta,
        sizes={name: len(x) for name, x in sampled.items()},
    )


def _nucleation(
    traj: _Loaded,
    solid_x: np.ndarray,
    frames: pd.DataFrame,
    h: float,
    settings: dict,
    prog: _Progress,
    n_threads,
) -> tuple[NucleationResult, np.ndarray, np.ndarray]:
    """Solid-like clusters of one trajectory; returns the result, dH_solid and cluster ids."""
    from quests_core.analysis import nucleation as nuc

    # dH against the solid, then the clusters frame by frame, each part of the bar in
    # proportion to its expected cost
    (_, split), _ = _Progress.plan([_Progress.KERNEL_PER_PAIR * len(traj.x) * len(solid_x),
                                    _Progress.CLUSTER_PER_ATOM * len(traj.x)])
    dh_solid = _delta(traj.x, solid_x, h, prog, n_threads, hi=split)
    counts = traj.dataset.frames["n_atoms"].to_numpy(np.int64)
    per_frame = np.split(dh_solid, np.cumsum(counts)[:-1])
    structures = traj.dataset.structures
    method = settings.get("cluster_method", "connected")
    prog(split, f"Solid-like clusters of {traj.spec.name}")
    found, done = [], 0
    for f in range(len(structures)):
        prog.check()
        found.extend(nuc.trajectory_clusters(structures[f : f + 1], per_frame[f : f + 1],
                                             method=method).clusters)
        done += int(counts[f])
        prog(split + (1.0 - split) * done / max(int(counts.sum()), 1))
    clusters = nuc.TrajectoryClusters.from_clusters(found)
    temperature = traj.dataset.frames["temperature"].to_numpy(float)
    band = nuc.critical_size_band(temperature)
    sub = frames.loc[frames["source"] == traj.spec.name]
    pre = pre_nucleation_frames(np.asarray(clusters.largest), np.asarray(band.n_min))
    dist = nuc.cluster_size_distribution(clusters.clusters, pre)
    result = NucleationResult(
        source=traj.spec.name,
        structure=sub["structure"].to_numpy(),
        time=sub["time"].to_numpy(float),
        largest=np.asarray(clusters.largest),
        n_solid=np.asarray(clusters.n_solid),
        temperature=temperature,
        band_min=np.asarray(band.n_min, dtype=float),
        band_max=np.asarray(band.n_max, dtype=float),
        sizes=np.asarray(dist.sizes),
        counts=np.asarray(dist.counts),
        n_frames=int(dist.n_frames),
    )
    t_fit = float(np.nanmean(temperature[pre])) if np.isfinite(temperature[pre]).any() else np.nan
    if not np.isfinite(t_fit):
        result.fit_error = "no temperature in the trajectory: CNT fit skipped"
    else:
        try:
            fit = nuc.fit_cnt_distribution(dist.sizes, dist.counts, t_fit)
            result.fit = {
                "temperature (K)": t_fit,
                "gamma_SL (J/m^2)": fit.gamma_sl_j_m2,
                "gamma_SL error (J/m^2)": fit.gamma_sl_err_j_m2,
                "dg_SL (eV/atom)": fit.dg_sl_per_atom,
                "N0": fit.n0,
            }
            grid = np.linspace(max(1, dist.sizes.min()), dist.sizes.max(), 100)
            result.fit_curve = (grid, np.exp(fit.log_counts(grid)) / max(dist.n_frames, 1))
        except (QuestsError, RuntimeError, ValueError) as exc:
            result.fit_error = f"CNT fit failed: {str(exc).splitlines()[0]}"
    return result, dh_solid, clusters.labels()


def pre_nucleation_frames(largest: np.ndarray, critical_min: np.ndarray) -> np.ndarray:
    """Frames pooled for the cluster-size distribution: below the melting point (finite
    critical size) and before the first frame whose largest cluster reaches the critical
    size. Falls back to every undercooled frame, then to every frame."""
    frames = np.arange(len(largest))
    undercooled = np.isfinite(critical_min)
    if not undercooled.any():
        return frames
    reached = np.flatnonzero(undercooled & (largest >= np.where(undercooled, critical_min, 0)))
    end = reached[0] if len(reached) else len(largest)
    pre = frames[undercooled & (frames < end)]
    return pre if len(pre) else frames[undercooled]


def nucleation_available() -> bool:
    """Whether the analyses module with the nucleation functions is installed."""
    import importlib.util

    try:
        return importlib.util.find_spec("quests_core.analysis.nucleation") is not None
    except ModuleNotFoundError:
        return False


#: the fixed cost of one core call in kernel terms (H per frame of many small frames,
#: learning curves of small subsets)
_CALL_PAIRS = _Progress.CALL / _Progress.KERNEL_PER_PAIR


def _read_share(files: list[FileSpec]) -> float:
    """Part of the progress bar for reading the files: the expected reading time against
    that of the steps after it, both guessed from the file sizes (~75 bytes per atom)."""
    size = 0
    for spec in files:
        try:
            size += os.path.getsize(spec.path)
        except OSError:
            pass
    if size == 0:
        return 0.05
    read = _Progress.READ_PER_BYTE * size
    rest = 5 * _Progress.DESCRIPTOR_PER_ATOM * size / 75  # descriptors, dH, H, ...
    return float(np.clip(read / (read + rest), 0.02, 0.5))


def _h_pairs(counts: np.ndarray, settings: dict) -> np.ndarray:
    """Kernel pairs of the per-frame H (exact: n^2; large frames sampled: n x sample)."""
    from quests_core.sampling import entropy_pairs

    exact = bool(settings.get("exact_entropy", False))
    return np.array([entropy_pairs(int(c), exact=exact) for c in counts], dtype=np.float64)


def _pipeline_plan(loaded: list[_Loaded], settings: dict, lo: float) -> dict:
    """Parts of the progress bar (``lo..1``) of the pipeline's steps after reading, in
    proportion to their expected cost (the cost model of :class:`_Progress`).

    Keys: ``("descriptors", i)``, ``("dH", i)``, ``("H", i)`` for file ``i``,
    ``"learning"``, ``("overlap", "source")``, ``("overlap", "label")``, ``"nucleation"``.
    """
    pair = _Progress.KERNEL_PER_PAIR
    per_atom = _Progress.DESCRIPTOR_PER_ATOM * (int(settings["k"]) / 32) ** 2
    n = [it.dataset.n_atoms for it in loaded]
    n_ref = sum(m for m, it in zip(n, loaded, strict=True) if it.spec.role == "reference")
    steps: dict = {}
    for i, m in enumerate(n):
        steps[("descriptors", i)] = per_atom * m
    for i, it in enumerate(loaded):
        counts = it.dataset.frames["n_atoms"].to_numpy(np.float64)
        against = n_ref if n_ref else (counts[0] if len(counts) else 0.0)
        steps[("dH", i)] = pair * n[i] * against
        steps[("H", i)] = pair * float(np.sum(_h_pairs(counts, settings) + _CALL_PAIRS))
    repeats = int(settings["learning_repeats"])
    steps["learning"] = pair * sum(
        _learning_cost(learning_sizes(m, settings["learning_max_n"]), repeats)
        for m in n if m >= 20
    )
    max_n = int(settings["overlap_max_n"])
    by_file = [min(m, max_n) for m in n]
    steps[("overlap", "source")] = (pair * (sum(by_file) ** 2 + len(by_file) ** 2 * _CALL_PAIRS)
                                    if len(by_file) >= 2 else 0.0)
    frames = pd.concat([it.dataset.frames[["label", "n_atoms"]] for it in loaded])
    per_label = frames.groupby(frames["label"].astype(str), sort=False)["n_atoms"].sum()
    by_label = [min(int(m), max_n) for name, m in per_label.items() if name != ""]
    steps[("overlap", "label")] = (pair * (sum(by_label) ** 2 + len(by_label) ** 2 * _CALL_PAIRS)
                                   if len(by_label) >= 2 else 0.0)
    solid = sum(m for m, it in zip(n, loaded, strict=True) if it.spec.role == "solid reference")
    traj = next((m for m, it in zip(n, loaded, strict=True) if it.spec.role == "trajectory"), 0)
    steps["nucleation"] = (pair * traj * solid + _Progress.CLUSTER_PER_ATOM * traj
                           if solid and traj and nucleation_available() else 0.0)
    return dict(zip(steps, _Progress.plan(list(steps.values()), lo, 1.0), strict=True))


def run_pipeline(
    files: list[FileSpec],
    settings: dict,
    progress: ProgressFn | None = None,
    cancel: threading.Event | Any | None = None,
    n_threads: int | None = None,
) -> Results:
    """Compute everything the views show.

    Parameters
    ----------
    files : list of FileSpec
        Files with roles ("reference", "test", "trajectory", "solid reference").
    settings : dict
        :meth:`dashboard.state.ComputeSettings.as_dict` values.
    progress : callable, optional
        ``progress(fraction, text)``.
    cancel : threading.Event-like, optional
        When set, the pipeline raises :class:`Cancelled` at the next block.

    Returns
    -------
    Results

    Notes
    -----
    dH of every atom is computed against the union of the reference files.
    Without a reference file, each trajectory is compared with its own first
    frame (and a solid reference with itself); a test file then needs a
    reference. Overlap and learning curves are computed on random subsets of
    at most ``overlap_max_n`` / ``learning_max_n`` environments.
    """
    if not files:
        raise QuestsError("no files chosen: pick files in the data directory or upload one")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise QuestsError("two files have the same name; remove one")
    k, cutoff = int(settings["k"]), float(settings["cutoff"])
    rng = np.random.default_rng(settings.get("seed", 0))
    prog = _Progress(progress, cancel)
    timings: dict[str, float] = {}
    warnings: list[str] = []
    t0 = time.perf_counter()

    read_end = _read_share(files)
    prog.stage(0.0, read_end, "Reading files")
    loaded = _load(files, prog)
    warnings.extend(_file_warnings(loaded))
    timings["read"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    spans = _pipeline_plan(loaded, settings, read_end)
    for i, it in enumerate(loaded):
        prog.stage(*spans[("descriptors", i)], f"Descriptors of {it.spec.name}")
        it.x = _compute_descriptors(it.dataset, k, cutoff, prog, n_threads, it.spec.name)
    timings["descriptors"] = time.perf_counter() - t1

    h = _choose_bandwidth(settings, loaded)
    refs = [it for it in loaded if it.spec.role == "reference"]
    x_ref = np.concatenate([it.x for it in refs]) if refs else None
    if x_ref is None:
        lonely = [it.spec.name for it in loaded if it.spec.role == "test"]
        if lonely:
            raise QuestsError(
                f"{', '.join(lonely)}: a test file needs a reference file; give one file the "
                "role 'reference'"
            )
        reference = "first frame of each file (no reference file chosen)"
    else:
        reference = " + ".join(it.spec.name for it in refs) + f" ({len(x_ref)} environments)"

    # ---- per-atom dH and per-frame H
    t2 = time.perf_counter()
    from quests_core.sampling import frame_entropy

    exact_h = bool(settings.get("exact_entropy", False))
    frame_parts, atom_parts, offset = [], [], 0
    for i, it in enumerate(loaded):
        prog.stage(*spans[("dH", i)], f"dH of {it.spec.name}")
        if x_ref is not None:
            dh = _delta(it.x, x_ref, h, prog, n_threads)
        else:
            first = int(it.dataset.frames["n_atoms"].iat[0])
            dh = _delta(it.x, it.x[:first], h, prog, n_threads)
        prog.stage(*spans[("H", i)], f"H per frame of {it.spec.name}")
        frames = it.dataset.frames.copy()
        counts = frames["n_atoms"].to_numpy(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        hs = np.empty(len(frames))
        h_err = np.zeros(len(frames))
        cost = np.cumsum(_h_pairs(counts, settings) + _CALL_PAIRS)  # H of frame s
        cost /= cost[-1]
        for s, (a, c) in enumerate(zip(starts, counts, strict=True)):
            prog.check()
            # exact up to 40,000 atoms (or with the exact_entropy setting), else sampled
            est = frame_entropy(it.x[a : a + c], h, exact=exact_h,
                                seed=(int(settings.get("seed", 0)), i, s),
                                n_threads=n_threads, cancel=prog.cancel,
                                progress=prog.span(cost[s - 1] if s else 0.0, cost[s]))
            hs[s], h_err[s] = float(est.H), float(est.stderr)
        mean_dh, frac = per_frame_stats(dh, counts)
        frames["H"] = hs
        frames["H_stderr"] = h_err
        frames["mean_dH"] = mean_dh
        frames["frac_novel"] = frac
        frames["role"] = it.spec.role
        frames["source"] = it.spec.name
        frames["path"] = it.spec.path
        frames["structure"] = frames["structure"].to_numpy() + offset
        frames["label"] = frames["label"].astype(str)
        frame_parts.append(frames)
        atom_parts.append(_atoms_frame(it, offset, dh))
        offset += len(frames)
    frames = pd.concat(frame_parts, ignore_index=True)
    frames["atom_offset"] = np.concatenate([[0], np.cumsum(frames["n_atoms"].to_numpy())[:-1]])
    atoms = pd.concat(atom_parts, ignore_index=True)
    for column in ("source", "role", "label", "species"):
        atoms[column] = atoms[column].astype("category")
    timings["dH"] = time.perf_counter() - t2
    mode = settings.get("bandwidth_mode", "fixed")
    if mode == "fixed":
        try:
            h_volume = _choose_bandwidth(dict(settings, bandwidth_mode="volume rule"), loaded)
        except QuestsError:
            h_volume = None
        warnings.extend(bandwidth_advice(frames, mode, h, x_ref is None, h_volume))

    # ---- learning curves
    t3 = time.perf_counter()
    prog.stage(*spans["learning"], "Learning curves")
    learning = _learning(loaded, h, settings, prog, n_threads)
    timings["learning"] = time.perf_counter() - t3

    # ---- overlap matrices
    t4 = time.perf_counter()
    overlaps: dict[str, OverlapResult] = {}
    groupings = [("source", "file")]
    labels = [v for v in pd.unique(frames["label"]) if v]
    if len(labels) >= 2:
        groupings.append(("label", "label"))
    for column, title in groupings:
        prog.stage(*spans[("overlap", column)], f"Overlap by {title}")
        groups = _overlap_groups(loaded, frames, column)
        if len(groups) < 2:
            continue
        overlaps[title] = overlap_matrix(
            groups, h, int(settings["overlap_max_n"]), rng, prog, n_threads, grouping=title
        )
    timings["overlap"] = time.perf_counter() - t4

    # ---- nucleation
    t5 = time.perf_counter()
    nucleation: NucleationResult | None = None
    note = ""
    solids = [it for it in loaded if it.spec.role == "solid reference"]
    trajs = [it for it in loaded if it.spec.role == "trajectory"]
    if not nucleation_available():
        note = "The nucleation analysis (quests_core.analysis.nucleation) is not installed."
    elif not solids or not trajs:
        note = "Give one file the role 'solid reference' and one 'trajectory' to find clusters."
    else:
        prog.stage(*spans["nucleation"], f"dH of {trajs[0].spec.name} against the solid")
        solid_x = np.concatenate([it.x for it in solids])
        nucleation, dh_solid, labels_ = _nucleation(
            trajs[0], solid_x, frames, h, settings, prog, n_threads
        )
        rows = frames.index[frames["source"] == trajs[0].spec.name]
        frames["largest_cluster"] = np.nan
        frames.loc[rows, "largest_cluster"] = nucleation.largest
        sel = (atoms["source"] == trajs[0].spec.name).to_numpy()
        atoms["dH_solid"] = np.float32(np.nan)
        atoms.loc[sel, "dH_solid"] = dh_solid.astype(np.float32)
        atoms["cluster"] = np.int32(-1)
        atoms.loc[sel, "cluster"] = labels_.astype(np.int32)
        if len(trajs) > 1:
            warnings.append("Clusters are computed for the first trajectory only.")
    timings["nucleation"] = time.perf_counter() - t5
    timings["total"] = time.perf_counter() - t0
    prog.stage(1.0, 1.0, "Done")
    return Results(
        frames=frames,
        atoms=atoms,
        h=h,
        k=k,
        cutoff=cutoff,
        reference=reference,
        files=list(files),
        learning=learning,
        overlap=overlaps,
        nucleation=nucleation,
        nucleation_note=note,
        timings=timings,
        warnings=warnings,
    )


# ----------------------------------------------------------------------------
# running a job off the event loop
# ----------------------------------------------------------------------------


#: Characters allowed in the name of a store made from the dashboard.
_STORE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def store_path(data_dir: str, name: str) -> Path:
    """Where the Stores tab writes the store ``name``: ``<data dir>/stores/<name>``."""
    if not _STORE_NAME.match(name or ""):
        raise QuestsError(f"{name!r}: a store name is letters, digits, '_', '-' and '.', "
                          "starting with a letter or digit")
    return Path(data_dir) / "stores" / name


def run_store(files: list[FileSpec], settings: dict, report: ProgressFn | None = None,
              cancel=None, n_threads: int | None = None) -> str:
    """The Stores tab's task: dH of the test and trajectory files against the reference
    files, chunk by chunk, into the resumable store ``settings["store_path"]``.

    Running it again on the same store resumes it; cancelling keeps the finished
    chunks. Returns the store's path.
    """
    from quests_core.chunked import chunked_delta_entropy

    prog = _Progress(report, cancel)
    refs = [f for f in files if f.role == "reference"]
    tests = [f for f in files if f.role in ("test", "trajectory")]
    if not refs:
        raise QuestsError("a store needs reference files: give a file the role 'reference'")
    if not tests:
        raise QuestsError("a store needs test or trajectory files to compute dH of")
    selections = sorted({f.index or ":" for f in tests})
    if len(selections) > 1:
        raise QuestsError("the files of one store need one frame selection, got "
                          + ", ".join(selections))
    labels = {f.label for f in tests}
    label = labels.pop() if len(labels) == 1 else ""  # one label for the whole store, or none
    k, cutoff = int(settings["k"]), float(settings["cutoff"])
    prog.stage(0.0, 0.05, "Reading the reference")
    loaded = _load(refs, prog)
    prog.stage(0.05, 0.15, "Reference descriptors")
    x = np.concatenate([_compute_descriptors(it.dataset, k, cutoff, prog, n_threads,
                                             it.spec.name) for it in loaded])
    h = _choose_bandwidth(settings, loaded)
    prog.stage(0.15, 1.0, "dH, chunk by chunk")

    def progress(done: int, total: int) -> None:
        prog(done / max(total, 1), f"dH: {done} of {total} frames in the store")

    path = Path(settings["store_path"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QuestsError(f"cannot write {path.parent.name}/{path.name} in the data directory "
                          f"({exc.strerror or exc})") from None
    chunked_delta_entropy(
        [f.path for f in tests], x, path, h, k=k, cutoff=cutoff, index=selections[0],
        chunk_frames=int(settings.get("chunk_frames", 16)),
        precision=settings.get("precision", "float32"),
        label=label or None,
        n_threads=n_threads, progress=progress, cancel=cancel,
    )
    return str(path)


def _pipeline_task(files, settings, report, cancel, n_threads):
    """The Data tab's task: :func:`run_pipeline`."""
    return run_pipeline(files, settings, report, cancel, n_threads=n_threads)


def _worker_main(task, files, settings, out_queue, cancel, n_threads, nice: int = 0) -> None:
    """Entry point of a worker process (or thread) running ``task``.

    ``task(files, settings, report, cancel, n_threads)`` is a module-level function
    (picklable for worker processes); its result, progress and errors go back
    through ``out_queue`` as ``(kind, payload, text)``.
    """
    if nice:
        try:  # computations yield the CPU to the server that answers the browsers
            os.nice(nice)
        except OSError:
            pass

    def report(fraction: float, text: str) -> None:
        out_queue.put(("progress", float(fraction), str(text)))

    try:
        result = task(files, settings, report, cancel, n_threads)
        report(1.0, "Sending the results")
    except (Cancelled, CoreCancelled):
        out_queue.put(("cancelled", None, "Cancelled"))
    except QuestsError as exc:
        text = str(exc)
        for spec in files:  # name files as the user knows them, not by their server path
            text = text.replace(spec.path, spec.name)
        out_queue.put(("error", None, text))
    except MemoryError:
        out_queue.put(("error", None, "out of memory: choose fewer or smaller files"))
    except Exception as exc:  # noqa: BLE001 - reported to the page, never crash silently
        tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
        out_queue.put(("error", None, f"computation failed: {type(exc).__name__}: {exc} ({tb})"))
    else:
        out_queue.put(("result", result, "Done"))


def _worker_standby(receive, out_queue, cancel, nice: int = 0, ready=None) -> None:
    """Entry point of a standby worker process (see :meth:`ComputeJob.prepare_standby`).

    Imports everything and loads the compiled kernels ahead of time, then runs the one
    job it receives through ``receive`` (``(task, files, settings, n_threads, environ)``,
    the server's environment at the time of the job) with :func:`_worker_main`.
    """
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass
    try:  # machine code from Numba's on-disk cache into memory, unless a job is waiting
        import importlib

        from .warm import KERNEL_MODULES

        for name in KERNEL_MODULES:
            if receive.poll():
                break
            importlib.import_module(name).warm_up()
    except Exception:  # noqa: BLE001 - the job itself will report any real problem
        pass
    if ready is not None:
        ready.set()
    try:
        task, files, settings, n_threads, environ = receive.recv()
    except (EOFError, OSError):  # the server went away before giving a job
        return
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)  # e.g. QUESTS_CACHE_DIR as the server has it now
    _worker_main(task, files, settings, out_queue, cancel, n_threads, 0)


class ComputeJob:
    """One computation for one session, run in a worker process or thread.

    Parameters
    ----------
    files, settings
        As for :func:`run_pipeline`.
    mode : {"process", "thread"}
        ``"process"`` (default) keeps the server's event loop free even while
        Numba kernels hold the GIL; ``"thread"`` is lighter (notebooks, tests).
    n_threads : int, optional
        Numba/BLAS threads of the job.
    task : callable, optional
        Module-level ``task(files, settings, report, cancel, n_threads)`` run instead
        of the Data tab's pipeline (the analysis tabs and the Stores tab use this).

    Notes
    -----
    Worker processes are spawned (no fork of the threaded server). Spawning costs
    an interpreter start and the imports (0.5-1 s on 2 cores, seconds when the
    machine is busy), so a server calls :meth:`prepare_standby`: a worker process is
    then always started ahead, and a process job takes it instead of spawning one.
    """

    #: ``(process, queue, cancel event, pipe end, ready event)`` of the standby worker
    _standby: tuple | None = None
    _standby_enabled = False
    _standby_lock = threading.Lock()

    def __init__(self, files: list[FileSpec], settings: dict, mode: str = "process",
                 n_threads: int | None = None, task: Callable | None = None):
        if mode not in ("process", "thread"):
            raise QuestsError(f"unknown job mode {mode!r}")
        self.task = task or _pipeline_task
        self.files = list(files)
        self.settings = dict(settings)
        self.mode = mode
        self.n_threads = n_threads
        self.fraction = 0.0
        self.text = "Queued"
        self.state = "created"  # created, queued, running, done, error, cancelled
        self.result: Results | None = None
        self.error: str | None = None
        self._worker = None
        self._queue = None
        self._cancel = None
        self._slot = False
        self._cancel_requested = False
        self._running_since: float | None = None  # until the worker's first message

    # -- lifecycle -----------------------------------------------------------------

    def _target(self) -> tuple:
        """The worker function and its leading arguments (before queue, cancel, threads,
        nice)."""
        return _worker_main, (self.task, self.files, self.settings)

    def try_start(self) -> bool:
        """Start if a job slot is free; returns whether it started."""
        if self.state not in ("created", "queued"):
            return True
        if self._cancel_requested:
            self._finish("cancelled", "Cancelled")
            return True
        ready, waited = self._kernels_ready()
        if not ready:  # the server's first minute: compiled kernels are on their way
            self.state = "queued"
            self.text = ("Compiling the numerical kernels (first start of the server only, "
                         f"{waited:.0f} s)")
            return False
        if not _JOB_SLOTS.acquire(blocking=False):
            self.state = "queued"
            self.text = "Queued: waiting for another computation to finish"
            return False
        self._slot = True
        target, leading = self._target()
        if (self.mode == "process" and target is _worker_main
                and self._start_on_standby(*leading)):
            self.state = "running"
            self.text = "Starting"
            self._running_since = time.monotonic()
            return True
        if self.mode == "process":
            ctx = mp.get_context("spawn")
            self._queue, self._cancel = ctx.Queue(), ctx.Event()
            worker, nice = ctx.Process, WORKER_NICE
        else:
            self._queue, self._cancel = queue_mod.Queue(), threading.Event()
            worker, nice = threading.Thread, 0
        self._worker = worker(
            target=target,
            args=(*leading, self._queue, self._cancel, self.n_threads, nice),
            daemon=True,
            name="quests-dashboard-job",
        )
        self._worker.start()
        self.state = "running"
        self.text = "Starting"
        self._running_since = time.monotonic()
        return True

    @staticmethod
    def prepare_standby() -> None:
        """Keep a worker process started ahead (imports done, compiled kernels loaded)
        for the next process job of this server, and start a new one after each job."""
        ComputeJob._standby_enabled = True
        ComputeJob._start_standby()

    @staticmethod
    def stop_standby() -> None:
        """Stop keeping a standby worker and end the one waiting (joined: no zombie)."""
        with ComputeJob._standby_lock:
            ComputeJob._standby_enabled = False
            standby, ComputeJob._standby = ComputeJob._standby, None
        if standby is not None:
            proc, _queue, _cancel, send, _ready = standby
            send.close()  # the standby sees the end of the pipe and exits
            proc.join(10)
            if proc.exitcode is None:
                proc.terminate()
                proc.join(5)

    @staticmethod
    def _start_standby() -> None:
        with ComputeJob._standby_lock:
            if not ComputeJob._standby_enabled or ComputeJob._standby is not None:
                return
            ctx = mp.get_context("spawn")
            receive, send = ctx.Pipe(duplex=False)
            queue, cancel, ready = ctx.Queue(), ctx.Event(), ctx.Event()
            proc = ctx.Process(target=_worker_standby,
                               args=(receive, queue, cancel, WORKER_NICE, ready),
                               daemon=True, name="quests-dashboard-job")
            proc.start()
            receive.close()
            ComputeJob._standby = (proc, queue, cancel, send, ready)

    @staticmethod
    def wait_standby(timeout: float = 60.0) -> bool:
        """Wait until the standby worker has its imports done and its kernels loaded;
        returns whether it has (False without a standby)."""
        standby = ComputeJob._standby
        if standby is None:
            return False
        end = time.monotonic() + timeout
        while not standby[4].wait(0.2):
            if not standby[0].is_alive() or time.monotonic() > end:
                return False
        return True

    def _start_on_standby(self, task, files, settings) -> bool:
        """Give the job to the standby worker; False when there is none (or it died)."""
        with ComputeJob._standby_lock:
            standby, ComputeJob._standby = ComputeJob._standby, None
        if standby is None:
            return False
        proc, queue, cancel, send, _ready = standby
        try:
            send.send((task, files, settings, self.n_threads, dict(os.environ)))
        except (OSError, ValueError):  # it died: forget it (and reap it)
            send.close()
            self._reap(proc)
            return False
        finally:
            send.close()
        # keep every synchronisation object the standby was started with: one that is
        # collected here before the standby has unpickled it would be gone for it
        self._worker, self._queue, self._cancel, self._ready = proc, queue, cancel, _ready
        return True

    @staticmethod
    def _kernels_ready() -> tuple[bool, float]:
        """Whether the server's kernel warm-up (:mod:`dashboard.warm`) has finished, and
        for how long it has run. A worker started earlier would compile the same Numba
        kernels again instead of loading them from the on-disk cache."""
        from . import warm

        return warm.kernels_ready(), warm.kernels_waited()

    @staticmethod
    def _reap(worker, grace: float = 30.0) -> None:
        """Join a finished job's worker process so that it never stays ``<defunct>``:
        at once when it has exited, else from a daemon thread (it is still shutting
        down), stopping it if it has not exited after ``grace`` seconds."""
        worker.join(0.1)
        if worker.exitcode is not None:
            return

        def wait() -> None:
            worker.join(grace)
            if worker.exitcode is None:
                worker.terminate()
                worker.join(5)
            if worker.exitcode is None:
                worker.kill()
                worker.join()

        threading.Thread(target=wait, name="quests-dashboard-job-reaper", daemon=True).start()

    def cancel(self) -> None:
        """Ask the job to stop (it stops at the next block)."""
        self._cancel_requested = True
        if self._cancel is not None:
            self._cancel.set()

    def poll(self, timeout: float = 0.0) -> bool:
        """Read pending messages (blocking up to ``timeout`` s); True when finished."""
        if self.state in ("done", "error", "cancelled"):
            return True
        if self.state in ("created", "queued"):
            self.try_start()
            return self.state in ("done", "error", "cancelled")
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                kind, payload, text = self._queue.get(timeout=remaining) if remaining else \
                    self._queue.get_nowait()
            except queue_mod.Empty:
                break
            if kind == "progress":
                self.fraction, self.text = payload, text
                self._running_since = None
                continue
            if kind == "result":
                self.result = payload
                self.fraction = 1.0
                self._finish("done", text)
            elif kind == "cancelled":
                self._finish("cancelled", text)
            else:
                self.error = text
                self._finish("error", text)
            return True
        if self._running_since is not None:  # a worker process still starting: say so
            waited = time.monotonic() - self._running_since
            if waited >= 1.0:
                self.text = f"Starting the worker process ({waited:.0f} s)"
        if not self._worker.is_alive():
            # drain once more: the final message may have arrived just now
            try:
                kind, payload, text = self._queue.get(timeout=0.5)
            except queue_mod.Empty:
                code = getattr(self._worker, "exitcode", None)
                if self._cancel_requested:
                    self._finish("cancelled", "Cancelled")
                else:
                    self.error = f"the computation stopped unexpectedly (exit code {code})"
                    self._finish("error", self.error)
                return True
            if kind == "result":
                self.result = payload
                self._finish("done", text)
            elif kind == "cancelled":
                self._finish("cancelled", text)
            elif kind == "error":
                self.error = text
                self._finish("error", text)
            return self.state in ("done", "error", "cancelled")
        return False

    def terminate(self) -> None:
        """Hard stop of a worker process that ignores cancellation."""
        if self.mode == "process" and self._worker is not None and self._worker.is_alive():
            self._worker.terminate()
            self._worker.join(2)
        if self.state not in ("done", "error"):
            self._finish("cancelled", "Cancelled")

    def _finish(self, state: str, text: str) -> None:
        self.state = state
        self.text = text
        if self._slot:
            self._slot = False
            _JOB_SLOTS.release()
        if self.mode == "process" and self._worker is not None:
            self._reap(self._worker)
            self._start_standby()  # the next job's worker, while this one's results show

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    # -- asyncio driver --------------------------------------------------------------

    async def run_async(
        self,
        on_progress: Callable[[ComputeJob], None] | None = None,
        interval: float = 0.25,
        cancel_grace: float = 5.0,
    ) -> ComputeJob:
        """Drive the job from an event loop without ever blocking it."""
        loop = asyncio.get_running_loop()
        cancel_since = None
        while not self.finished:
            if self.state in ("created", "queued"):
                self.try_start()
                if self.state == "queued":
                    if on_progress:
                        on_progress(self)
                    await asyncio.sleep(interval)
                    continue
            # the blocking read (and unpickling of a large result) runs in a thread
            await loop.run_in_executor(None, self.poll, interval)
            if on_progress:
                on_progress(self)
            if self._cancel_requested and not self.finished:
                cancel_since = cancel_since or time.monotonic()
                if time.monotonic() - cancel_since > cancel_grace:
                    self.terminate()
        if self.state == "done":  # what the session does next (run_sync ends with "Done")
            self.text = "Done: drawing the results"
        if on_progress:
            on_progress(self)
            if self.state == "done":  # let the page show it before the views draw
                await asyncio.sleep(0.05)
        return self

    def run_sync(self, timeout: float = 3600.0) -> ComputeJob:
        """Run to completion in the calling thread (scripts and tests)."""
        end = time.monotonic() + timeout
        while not self.finished:
            if time.monotonic() > end:
                self.cancel()
                self.terminate()
                break
            if self.state in ("created", "queued"):
                if not self.try_start():
                    time.sleep(0.1)
                continue
            self.poll(0.25)
        return self
