"""Building blocks of the dashboard's computations (worker side).

What the Data tab's pipeline (:mod:`dashboard.pipeline`) and the other tabs'
tasks (:mod:`dashboard.tasks`) share: :class:`Progress` (the progress bar,
cancellation and the cost model that sizes the bar's stages), and the
worker-side calls of the core's loading service (:mod:`quests_core.loading`)
with it: reading the chosen files (:func:`load_files`), their descriptors
through the shared on-disk descriptor cache (:func:`file_descriptors`), the
bandwidth (:func:`choose_bandwidth`, the core's one policy), dH with progress
(:func:`delta`), and the display names and warnings about files.

Nothing here knows about Panel or jobs; every function runs in a worker
process (or thread) of :mod:`dashboard.jobs`. Memory: one file's descriptors
at a time on top of the datasets read (the cache streams them chunk by chunk).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quests_core.errors import Cancelled, QuestsError
from quests_core.loading import Loaded
from quests_core.settings import DEFAULTS, Settings

from .state import FileSpec

ProgressFn = Callable[[float, str], None]

_CACHE_LOCK = threading.Lock()
_CACHE = None


class Progress:
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
        """Raise :class:`quests_core.errors.Cancelled` when the job was cancelled."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("computation cancelled")


#: The estimate of the time left is shown once the job has run this long (s) ...
ETA_MIN_ELAPSED = 2.0
#: ... and this part of the bar is done: earlier the rate is mostly start-up noise.
ETA_MIN_FRACTION = 0.05


def time_left(elapsed: float, fraction: float, min_elapsed: float = ETA_MIN_ELAPSED,
              min_fraction: float = ETA_MIN_FRACTION) -> float | None:
    """Seconds left of a job ``fraction`` done after ``elapsed`` s, or None while that
    means nothing.

    The bar's fraction comes from the cost model of :class:`Progress` (each step's part
    in proportion to its expected cost), so the work left is ``1 - fraction`` at the rate
    seen so far: ``elapsed (1 - fraction) / fraction``. None before ``min_elapsed`` s or
    ``min_fraction`` of the bar, and once the bar is full.
    """
    elapsed, fraction = float(elapsed), float(fraction)
    if not (np.isfinite(elapsed) and np.isfinite(fraction)):
        return None
    if elapsed < min_elapsed or fraction < min_fraction or fraction >= 1.0:
        return None
    return elapsed * (1.0 - fraction) / fraction


def format_time_left(seconds: float | None) -> str:
    """``"about 40 s left"``, ``"about 3 min left"``, ``"about 1 h 5 min left"`` ("" for
    None): whole seconds under 10 s, then 5 s steps, minutes from 90 s."""
    if seconds is None or not np.isfinite(seconds):
        return ""
    s = max(float(seconds), 0.0)
    if s < 10:
        return f"about {max(round(s), 1)} s left"
    if s < 90:
        return f"about {5 * round(s / 5)} s left"
    minutes = round(s / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60} min left"


#: the fixed cost of one core call in kernel terms (H per frame of many small frames,
#: learning curves of small subsets)
CALL_PAIRS = Progress.CALL / Progress.KERNEL_PER_PAIR


# ----------------------------------------------------------------------------
# display names and warnings
# ----------------------------------------------------------------------------


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


def type_map_warning(spec: FileSpec) -> str:
    """The one-line warning for a chosen LAMMPS file whose numeric types will be read as H,
    He, ... and where its type map goes ("" when the species are known)."""
    from quests_core.notes import type_map_note

    return type_map_note(spec.path, spec.type_map, "in the files table's 'types' column.",
                         name=spec.name)


def topology_problem(spec: FileSpec, topology_name: str = "") -> str:
    """The one-line problem with the topology of a chosen MD trajectory ("" when it names
    every atom, or when the file is no MD trajectory).

    The topology given (``spec.topology``), else the file with the trajectory's name next
    to it, is read with :func:`quests_core.io_mdanalysis.load_topology` (with the file's
    'types' column: LAMMPS types, or atom names such as ``MW=O``, the same string as
    ``--type-map``): unreadable, no atoms, an atom without an element (or a name of the
    type map no atom has), no topology at
    all, or MDAnalysis missing (the message names the ``md`` extra). Server paths in the
    message become ``spec.name`` / ``topology_name``.
    """
    from quests_core.io_mdanalysis import MD_FORMATS, find_topology, load_topology, md_format

    fmt = md_format(spec.path)
    if fmt is None:
        return ""
    path = spec.topology or find_topology(spec.path)
    if path is None:
        return (f"{spec.name}: {MD_FORMATS[fmt]} files do not name their atoms: give a "
                "topology file (PDB, GRO, PSF, LAMMPS data, prmtop, tpr) in the files "
                "table's 'topology' column, or put one with the same name next to it")
    try:
        load_topology(path, spec.type_map or None,
                      topology_format=(spec.topology_format or None) if spec.topology
                      else None)
    except QuestsError as exc:
        text = str(exc).replace(path, topology_name or Path(path).name)
        return f"{spec.name}: topology {text}"
    return ""


# ----------------------------------------------------------------------------
# reading files and their descriptors
# ----------------------------------------------------------------------------


def load_files(specs: Sequence[FileSpec], prog: Progress) -> list[Loaded]:
    """Read the chosen files (their frame selection, type map, time step and label):
    :func:`quests_core.loading.read_files` with the bar and cancellation of ``prog``.

    Raises
    ------
    QuestsError
        When a file cannot be read or its selection holds no structure.
    """
    from quests_core.loading import read_files

    def progress(done: int, total: int) -> None:
        prog(done / max(total, 1), f"Reading {specs[done].name}" if done < total else None)

    return read_files(specs, progress=progress, cancel=prog.cancel)


def _times_from_steps(dataset) -> bool:
    """Whether some frame's time was made of its MD step number (no time of its own)."""
    from quests_core.pipeline import md_step

    structures = getattr(dataset, "structures", None) or []
    return any("time" not in atoms.info and md_step(atoms) is not None
               for atoms in structures)


def file_warnings(loaded: list[Loaded]) -> list[str]:
    """Warnings about how files were read: LAMMPS types read as H, He, ...; times made of
    MD step numbers and an assumed step length; a last frame cut short (a trajectory
    still being written) skipped."""
    from quests_core.notes import step_time_note

    out = []
    for item in loaded:
        spec = item.spec
        text = type_map_warning(spec)
        if text:
            out.append(text)
        for note in getattr(item.dataset, "topology_notes", []):  # virtual sites, masses
            out.append(spec.name + note[len(spec.path):] if note.startswith(spec.path)
                       else note)
        if _times_from_steps(item.dataset):
            out.append(step_time_note(spec.name, spec.timestep_fs,
                                      "set 'LAMMPS time step (fs)' in Advanced settings if the "
                                      "run used another step length"))
        for _path, frame, reason in getattr(item.dataset, "skipped_frames", []):
            if reason.startswith("at byte"):  # frames end before the file: garbage after
                out.append(f"{spec.name}: frame {frame}: {reason}")
            else:
                out.append(f"{spec.name}: frame {frame} skipped, {reason} (the last frame of "
                           "a file still being written?)")
    return out


def _descriptor_cache():
    """The shared on-disk descriptor cache (None when its folder cannot be used)."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            from quests_core.cache import DescriptorCache

            try:
                _CACHE = DescriptorCache()
            except Exception:  # noqa: BLE001 - no cache is fine, it only saves time
                _CACHE = False
        return _CACHE or None


def file_descriptors(ds, settings: Settings, prog: Progress, n_threads=None,
                     name: str | None = None) -> np.ndarray:
    """Descriptors (``settings.k``, ``settings.cutoff``) of a dataset, through the
    descriptor cache when there is one, with progress and cancellation
    (:func:`quests_core.loading.compute_descriptors`).

    An error about a structure names the file (``name``, else the path it was read
    from) and its frame in that file.
    """
    from quests_core.loading import compute_descriptors

    try:
        return compute_descriptors(ds, settings, cache=_descriptor_cache(),
                                   progress=lambda done, total: prog(done / total),
                                   cancel=prog.cancel, n_threads=n_threads)
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


def structure_descriptors(
    spec: FileSpec, settings: Settings, prog: Progress, n_threads=None
) -> tuple[Any, list[np.ndarray], float]:
    """Read one file and compute the descriptors of each of its structures.

    Returns
    -------
    dataset : quests_core.dataset.Dataset
    descs : list of (n_atoms_i, d) arrays, one per structure
    h : float
        Bandwidth from the settings: fixed, or the volume rule of this file (the
        structures of the study are its own reference).
    """
    from quests_core.loading import reference_bandwidth

    (item,) = load_files([spec], prog)
    item.x = file_descriptors(item.dataset, settings, prog, n_threads, spec.name)
    counts = item.dataset.frames["n_atoms"].to_numpy(np.int64)
    descs = np.split(np.asarray(item.x), np.cumsum(counts)[:-1])
    return item.dataset, descs, reference_bandwidth([item], settings)


def descriptor_file(path: str, name: str, settings: Settings) -> np.ndarray:
    """Descriptors saved in a file (:func:`quests_core.descriptor_files.load_descriptors`:
    ``.npz``, or ``.npy`` with its layout sidecar, checked against ``settings``' k,
    cutoff and species); errors name the file ``name`` (as the user knows it), never
    its server path."""
    from quests_core.descriptor_files import load_descriptors

    try:
        return load_descriptors(path, k=settings.k, cutoff=settings.cutoff,
                                species=settings.species)
    except QuestsError as exc:
        raise QuestsError(str(exc).replace(path, name)) from None


# ----------------------------------------------------------------------------
# bandwidth and dH
# ----------------------------------------------------------------------------


def choose_bandwidth(settings: Settings, loaded: list[Loaded]) -> float:
    """h of a computation, the core's one policy (:func:`quests_core.loading.reference`):
    the fixed bandwidth, or the volume rule of the reference files' frames (of the first
    frame of every file when none is a reference: each is compared with its own)."""
    from quests_core.loading import reference_bandwidth

    refs = [item for item in loaded if item.role == "reference"]
    return reference_bandwidth(refs or loaded, settings, self_reference=not refs)


def delta(y: np.ndarray, x: np.ndarray, h: float, prog: Progress, n_threads,
          lo: float = 0.0, hi: float = 1.0, precision: str = DEFAULTS.precision,
          backend: str = DEFAULTS.backend) -> np.ndarray:
    """dH(y | x) with progress (over ``lo..hi`` of the current stage) and cancellation,
    summed in ``precision`` on ``backend`` (the run's :class:`Settings`)."""
    from quests_core import delta_entropy

    return np.asarray(
        delta_entropy(y, x, h, n_threads=n_threads, progress=prog.span(lo, hi),
                      cancel=prog.cancel, precision=precision, backend=backend),
        dtype=np.float64,
    )


def force_error(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """||F_a - F_b|| per atom (eV/Å) when a file holds exactly two force arrays.

    Files with forces from two models (for example ``forces_emt`` and
    ``forces_model``) get a per-atom force error to plot against dH.
    """
    from quests_core.analysis.uncertainty import force_arrays, force_errors

    keys = force_arrays(arrays)
    if len(keys) != 2:
        return None
    return force_errors(arrays[keys[0]], arrays[keys[1]])


#: Characters allowed in the name of a store made from the dashboard.
_STORE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def store_path(data_dir: str, name: str) -> Path:
    """Where the Stores tab writes the store ``name``: ``<data dir>/stores/<name>``."""
    if not _STORE_NAME.match(name or ""):
        raise QuestsError(f"{name!r}: a store name is letters, digits, '_', '-' and '.', "
                          "starting with a letter or digit")
    return Path(data_dir) / "stores" / name

