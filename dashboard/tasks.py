"""Worker-side tasks of the Stores tab and the analysis tabs, with their requests.

Each task is a module-level ``task(files, request, report, cancel, n_threads)``
run by a :class:`dashboard.jobs.ComputeJob` (usually in a worker process): it
reads the chosen files and their descriptors with :mod:`dashboard.compute`,
calls the science of :mod:`quests_core` (:func:`quests_core.chunked.chunked_delta_entropy`,
:func:`quests_core.analysis.compression.compression_study`,
:func:`quests_core.analysis.active_learning.generation_study`,
:func:`quests_core.analysis.uncertainty.uncertainty_study`) and returns a result
the view draws. A request is frozen and picklable: the descriptor and kernel
settings (:class:`dashboard.state.RunSettings`) plus the task's own inputs,
checked by the view before the job starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quests_core import loading
from quests_core.analysis import active_learning as al
from quests_core.analysis import compression as comp
from quests_core.analysis import uncertainty as uq
from quests_core.errors import QuestsError

from .compute import (
    Progress,
    ProgressFn,
    descriptor_file,
    file_descriptors,
    load_files,
    structure_descriptors,
)
from .state import FileSpec, RunSettings

# ----------------------------------------------------------------------------
# Stores tab: write a chunk store
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreRequest:
    """What the Stores tab writes: dH against the reference files into ``store_path``,
    ``chunk_frames`` frames per chunk, kernel sums in ``precision``."""

    settings: RunSettings
    store_path: str
    chunk_frames: int
    precision: str


def run_store(files: list[FileSpec], request: StoreRequest, report: ProgressFn | None = None,
              cancel=None, n_threads: int | None = None) -> str:
    """The Stores tab's task: dH of the test and trajectory files against the reference
    files, chunk by chunk, into the resumable store ``request.store_path``.

    Running it again on the same store resumes it; cancelling keeps the finished
    chunks. Returns the store's path.
    """
    from quests_core.chunked import chunked_delta_entropy

    core = request.settings.core
    prog = Progress(report, cancel)
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
    topologies = sorted({f.topology for f in tests})
    if len(topologies) > 1:
        raise QuestsError("the files of one store need one topology (or each the one next "
                          "to it), got " + ", ".join(Path(t).name or "(next to it)"
                                                     for t in topologies))
    type_maps = sorted({f.type_map for f in tests})
    if len(type_maps) > 1:
        raise QuestsError("the files of one store need one LAMMPS type map, got "
                          + ", ".join(t or "(none)" for t in type_maps))
    labels = {f.label for f in tests}
    label = labels.pop() if len(labels) == 1 else ""  # one label for the whole store, or none
    prog.stage(0.0, 0.05, "Reading the reference")
    loaded = load_files(refs, prog)
    prog.stage(0.05, 0.15, "Reference descriptors")
    for it in loaded:
        it.x = file_descriptors(it.dataset, core, prog, n_threads, it.spec.name)
    ref = loading.reference(loaded, core)  # the reference files and their h (the core's policy)
    x, h = ref.x, ref.h
    prog.stage(0.15, 1.0, "dH, chunk by chunk")

    def progress(done: int, total: int) -> None:
        prog(done / max(total, 1), f"dH: {done} of {total} frames in the store")

    path = Path(request.store_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QuestsError(f"cannot write {path.parent.name}/{path.name} in the data directory "
                          f"({exc.strerror or exc})") from None
    chunked_delta_entropy(
        [f.path for f in tests], x, path, h, k=core.k, cutoff=core.cutoff,
        species=core.species, index=selections[0], type_map=type_maps[0] or None,
        topology=topologies[0] or None,
        chunk_frames=int(request.chunk_frames),
        precision=request.precision, label=label or None,
        n_threads=n_threads, progress=progress, cancel=cancel,
    )
    return str(path)


def _one_file(files: list[FileSpec], request: Any, report, cancel, n_threads, share: float):
    """The start of a one-file analysis task: its settings, progress, file entry, dataset,
    descriptors per structure and h (:func:`dashboard.compute.structure_descriptors`,
    over the first ``share`` of the bar)."""
    core = request.settings.core
    prog = Progress(report, cancel)
    spec = files[0]
    prog.stage(0.0, share, f"Descriptors of {spec.name}")
    ds, descs, h = structure_descriptors(spec, core, prog, n_threads)
    return core, prog, spec, ds, descs, h


# ----------------------------------------------------------------------------
# Compression tab
# ----------------------------------------------------------------------------

#: Legend names of the compression methods (also the progress text).
METHOD_LABELS = {
    "msc": "MSC (information)",
    "fps": "farthest-point sampling",
    "kmeans": "k-means",
    "random": "random",
}


@dataclass(frozen=True)
class CompressionRequest:
    """Inputs of :func:`compression_task` (fractions in (0, 1], seeds of the seeded
    methods, every ``env_step``-th environment kept, ``gap``: fit the full set's
    learning curve for the information gap)."""

    settings: RunSettings
    methods: tuple[str, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    env_step: int
    gap: bool


@dataclass
class FileStudyResult:
    """What every one-file analysis result holds: the file (``source``, its frame
    selection ``frames``), the report table, h, k, cutoff, structures and the
    environment step."""

    source: str
    report: pd.DataFrame
    h: float
    k: int
    cutoff: float
    n_structures: int
    env_step: int


@dataclass(kw_only=True)
class CompressionResult(FileStudyResult):
    """The compression report of one file (``quests_core.analysis.compression``).

    ``report`` has one row per method and size: method, fraction, size,
    n_envs, entropy, entropy_std, diversity, diversity_std, overlap,
    overlap_std, info_gap, gap_reference (entropies and D in nats).
    """

    n_envs: int
    gap_reference: float
    gap_kind: str
    frames: str = ":"  #: the frame selection of the file (as typed in the files table)


def compression_task(files: list[FileSpec], request: CompressionRequest, report=None,
                     cancel=None, n_threads=None) -> CompressionResult:
    """Worker side of the Compression tab: descriptors, then
    :func:`quests_core.analysis.compression.compression_study`."""
    core, prog, spec, _, descs, h = _one_file(files, request, report, cancel, n_threads, 0.3)
    descs = comp.every_nth(descs, request.env_step)
    prog.stage(0.3, 1.0, "Information gap reference (learning curve of the full set)")

    def progress(step: str, done: int, total: int) -> None:
        prog.check()
        text = ("Information gap reference (learning curve of the full set)"
                if done == 0 else f"Compressing with {METHOD_LABELS.get(step, step)}")
        prog(done / max(total, 1), text if done < total else "Done")

    study = comp.compression_study(
        descs, methods=request.methods, fractions=request.fractions, h=h,
        seeds=request.seeds, gap=request.gap, n_threads=n_threads, progress=progress,
        precision=core.precision, backend=core.backend,
    )
    prog.stage(1.0, 1.0, "Done")
    return CompressionResult(
        source=spec.name, frames=spec.index or ":", report=study.report, h=h, k=core.k,
        cutoff=core.cutoff,
        n_structures=study.n_structures, n_envs=study.n_envs, env_step=int(request.env_step),
        gap_reference=study.gap.value, gap_kind=study.gap.kind,
    )


# ----------------------------------------------------------------------------
# Active-learning tab
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveLearningRequest:
    """Inputs of :func:`active_learning_task`: the info key of the generations and the
    environment step."""

    settings: RunSettings
    generation_key: str
    env_step: int


@dataclass(kw_only=True)
class ActiveLearningResult(FileStudyResult):
    """The active-learning report of one file.

    ``report`` has one row per generation (ascending): generation, n_envs,
    n_envs_cumulative, novelty (NaN for the first generation), mean_dH (nats),
    entropy and diversity of the cumulative dataset (nats); ``key`` names the
    generations' info key.
    """

    key: str
    frames: str = ":"  #: the frame selection of the file (as typed in the files table)


def active_learning_task(files: list[FileSpec], request: ActiveLearningRequest, report=None,
                         cancel=None, n_threads=None) -> ActiveLearningResult:
    """Worker side of the Active-learning tab: descriptors, then
    :func:`quests_core.analysis.active_learning.generation_study`."""
    core, prog, spec, ds, descs, h = _one_file(files, request, report, cancel, n_threads, 0.4)
    key = request.generation_key
    try:
        generations = al.generation_labels(ds.structures, key)
    except QuestsError as exc:  # named by the file's own frame, not the structure's place
        where = (f"frame {int(ds.frames['frame'].iat[exc.index])}: "
                 if exc.index is not None else "")
        raise QuestsError(where + exc.detail, source=spec.name) from None
    n_gen = len(np.unique(generations))
    prog.stage(0.4, 1.0, f"Novelty, H and D of {n_gen} generations")
    study = al.generation_study(descs, generations, h=h, env_step=request.env_step,
                                n_threads=n_threads, precision=core.precision,
                                backend=core.backend)
    prog.stage(1.0, 1.0, "Done")
    return ActiveLearningResult(
        source=spec.name, frames=spec.index or ":", key=key, report=study.report, h=h,
        k=core.k, cutoff=core.cutoff,
        n_structures=study.n_structures, env_step=study.env_step,
    )


# ----------------------------------------------------------------------------
# Uncertainty tab
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UncertaintyRequest:
    """Inputs of :func:`uncertainty_task`.

    ``reference_mode`` is ``"label"`` (the structures of ``reference_label`` of the
    test file), ``"file"`` (the second file of the job) or ``"descriptors"`` (the
    descriptor file ``descriptor_path``, shown as ``descriptor_name``).
    """

    settings: RunSettings
    reference_mode: str
    reference_label: str
    test_label: str
    forces_pred: str
    forces_ref: str
    n_bins: int
    window: float
    quantile: float
    descriptor_path: str = ""
    descriptor_name: str = ""


@dataclass
class UncertaintyResult:
    """Per-atom dH (nats) and force error (eV/Å) of the test atoms, with the
    running average and the recall of dH > 0 (:class:`uq.UQResult`)."""

    source: str
    reference: str
    forces: tuple[str, str]
    dh: np.ndarray
    error: np.ndarray
    running: uq.RunningAverage
    recall: uq.ErrorRecall
    quantile: float
    h: float
    k: int
    cutoff: float
    n_reference: int
    frames: str = ":"  #: the frame selection of the test file (as typed in the files table)

    def bins(self) -> pd.DataFrame:
        """One row per dH bin: centre, mean and std of the error, atoms in the window."""
        r = self.running
        return pd.DataFrame({"dH_center": r.centers, "mean_error": r.mean,
                             "std_error": r.std, "count": r.count})


def _select_label(ds, label: str, source: str, what: str):
    out = ds.select(label=label)
    if len(out) == 0:
        labels = sorted({str(v) for v in ds.frames["label"]})
        raise QuestsError(f"{what}: no structure with label {label!r} (labels: {labels})",
                          source=source)
    return out


def uncertainty_task(files: list[FileSpec], request: UncertaintyRequest, report=None,
                     cancel=None, n_threads=None) -> UncertaintyResult:
    """Worker side of the Uncertainty tab: the test and training sets, their
    descriptors, then :func:`quests_core.analysis.uncertainty.uncertainty_study`."""
    core = request.settings.core
    prog = Progress(report, cancel)
    prog.stage(0.0, 0.1, "Reading files")
    loaded = load_files(files, prog)
    spec, full = files[0], loaded[0].dataset
    mode, ref_label = request.reference_mode, request.reference_label
    ref_ds: Any = None
    if mode == "label":
        ref_ds = _select_label(full, ref_label, spec.name, "missing reference")
        reference = f"label {ref_label!r} of {spec.name}"
    elif mode == "file":
        ref_ds = loaded[1].dataset
        reference = files[1].name
    else:
        reference = request.descriptor_name
    if request.test_label:
        test = _select_label(full, request.test_label, spec.name, "empty selection")
    elif mode == "label":
        test = full.select(label=lambda s: s != ref_label)
        if len(test) == 0:
            raise QuestsError(f"empty selection: every structure has the reference label "
                              f"{ref_label!r}", source=spec.name)
    else:
        test = full
    pred, ref = uq.force_array_names(test.arrays, request.forces_pred, request.forces_ref,
                                     spec.name)
    error = uq.force_errors(test.arrays[pred], test.arrays[ref])

    prog.stage(0.1, 0.4, f"Descriptors of {len(test)} test structures")
    x_test = file_descriptors(test, core, prog, n_threads, spec.name)
    if ref_ds is not None:
        prog.stage(0.4, 0.6, f"Descriptors of the reference ({reference})")
        x_ref = file_descriptors(ref_ds, core, prog, n_threads, reference)
        h = core.resolve_bandwidth(ref_ds.frames, source=spec.name)
    elif core.bandwidth_rule != "fixed":  # the CLI's uq refuses the same
        raise QuestsError("the volume rule needs the reference structures: descriptor files "
                          "hold no cell volumes (choose a fixed h)",
                          source=request.descriptor_name)
    else:
        x_ref = descriptor_file(request.descriptor_path, request.descriptor_name, core)
        h = core.bandwidth

    prog.stage(0.6, 1.0, f"dH of {len(x_test):,} test atoms against {len(x_ref):,} "
                         "reference environments")
    res = uq.uncertainty_study(
        x_test, x_ref, error, h, n_bins=request.n_bins, window=request.window,
        quantile=request.quantile, test_name=spec.name, reference_name=reference,
        progress=prog.span(0.0, 0.95), n_threads=n_threads, cancel=cancel,
        precision=core.precision, backend=core.backend,
    )
    prog.stage(1.0, 1.0, "Done")
    return UncertaintyResult(
        source=spec.name, frames=spec.index or ":", reference=reference, forces=(pred, ref),
        dh=res.dh,
        error=res.error, running=res.running, recall=res.recall, quantile=request.quantile,
        h=h, k=core.k, cutoff=core.cutoff, n_reference=len(x_ref),
    )

