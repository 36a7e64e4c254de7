"""The Data tab's computation: :func:`run_pipeline` and its progress plan.

:func:`run_pipeline` reads the chosen files, computes their descriptors, per-atom
dH against the reference files, per-frame H and the per-frame statistics
(:func:`quests_core.trajectory.per_frame_stats`), learning curves
(:func:`quests_core.learning.learning_sizes`), overlap matrices
(:func:`quests_core.overlaps.overlap_matrix`) and the nucleation analysis, and
returns one :class:`~dashboard.state.Results`. It is a plain function (the tests
call it directly); the server runs it as the default task of a
:class:`dashboard.jobs.ComputeJob`.

:func:`_pipeline_plan` is the cost model that sizes each step's part of the
progress bar (the per-step costs of :class:`dashboard.compute.Progress`).

Memory: every file's descriptors and dH are held at once (the per-atom table
is the result); learning curves and overlaps work on subsets of at most
``learning_max_n`` / ``overlap_max_n`` environments.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError
from quests_core.learning import learning_sizes
from quests_core.loading import reference as reference_of
from quests_core.notes import (
    NOVEL_ADVICE_FRACTION,
    narrow_bandwidth_note,
    self_reference_novelty,
)
from quests_core.trajectory import per_frame_stats

from .compute import (
    CALL_PAIRS,
    Loaded,
    Progress,
    ProgressFn,
    choose_bandwidth,
    delta,
    file_descriptors,
    file_warnings,
    force_error,
    load_files,
)
from .state import (
    FileSpec,
    LearningResult,
    NucleationResult,
    OverlapResult,
    Results,
    RunSettings,
)


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
        novel = self_reference_novelty(rows["frac_novel"], rows["n_atoms"])
        note = narrow_bandwidth_note(str(source), novel, h, h_volume,
                                     "try Bandwidth 'volume rule'", threshold)
        if note:
            notes.append(note)
    return notes



def _atoms_frame(item: Loaded, structure_offset: int, dh: np.ndarray) -> pd.DataFrame:
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



def _learning(
    loaded: list[Loaded], h: float, settings: RunSettings, prog: Progress, n_threads
) -> dict[str, LearningResult]:
    from quests_core import fit_asymptote, learning_curve

    out: dict[str, LearningResult] = {}
    items = [it for it in loaded if it.x is not None and len(it.x) >= 20]
    repeats = settings.options.learning_repeats
    all_sizes = [learning_sizes(len(it.x), settings.options.learning_max_n) for it in items]
    # H of a subset of n rows costs n^2 kernel terms: the bar follows that, not the count
    costs = [_learning_cost(sizes, repeats) for sizes in all_sizes]
    for item, sizes, (a, b) in zip(items, all_sizes, Progress.plan(costs), strict=True):
        prog(a, f"Learning curve of {item.spec.name}")
        prog.check()
        if len(sizes) < 2:
            continue
        done = np.cumsum(np.repeat(sizes.astype(np.float64) ** 2 + CALL_PAIRS, repeats))
        done /= done[-1]

        def progress(i, total, a=a, b=b, done=done):
            prog(a + (b - a) * done[min(i, len(done)) - 1])

        lc = learning_curve(
            item.x, sizes, h=h, repeats=repeats, seed=settings.core.seed,
            progress=progress, cancel=prog.cancel, **_kernel_options(settings),
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
    return float(repeats * np.sum(np.asarray(sizes, dtype=np.float64) ** 2 + CALL_PAIRS)) \
        if len(sizes) >= 2 else 0.0


def _overlap_groups(
    loaded: list[Loaded], frames: pd.DataFrame, grouping: str
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


def _overlap_bandwidths(frames: pd.DataFrame, grouping: str, names: list[str],
                        settings: RunSettings) -> tuple[float | dict[str, float] | None, str]:
    """h of every column (reference) group and a note ("" if none): the core's one policy
    (:func:`quests_core.loading.overlap_bandwidths`, as ``quests-dashboard overlap``).

    With the volume rule, dH against a group uses that group's own h(V); when a group
    has no periodic cell every column uses one h, the volume rule of all groups' frames
    pooled, and the note says so. When no group has a cell there is no matrix (None)
    and the note says why.
    """
    from quests_core.loading import overlap_bandwidths

    tables = {name: frames[frames[grouping].astype(str) == name] for name in names}
    try:
        h, note = overlap_bandwidths(tables, settings.core)
    except QuestsError as exc:
        return None, f"Overlap by {grouping}: {exc}; no overlap matrix"
    return h, (f"Overlap by {grouping}: {note}" if note else "")


def _overlap(groups: dict[str, np.ndarray], h, settings: RunSettings, prog: Progress,
             n_threads, grouping: str) -> OverlapResult:
    """overlap(row | column) of every ordered pair of groups, sampled to ``overlap_max_n``
    rows (:func:`quests_core.overlaps.overlap_matrix`, dH of every pair kept)."""
    from quests_core.overlaps import overlap_matrix

    res = overlap_matrix(groups, h, max_n=settings.options.overlap_max_n,
                         seed=settings.core.seed, keep_delta=True, progress=prog.span(),
                         n_threads=n_threads, cancel=prog.cancel, **_kernel_options(settings))
    return OverlapResult(grouping=grouping, names=list(res.names), matrix=res.matrix,
                         delta=res.delta, sizes=dict(res.sizes),
                         bandwidths=dict(zip(res.names, map(float, res.bandwidths),
                                             strict=True)))


def _nucleation(
    traj: Loaded,
    solid_x: np.ndarray,
    frames: pd.DataFrame,
    h: float,
    settings: RunSettings,
    prog: Progress,
    n_threads,
) -> tuple[NucleationResult, np.ndarray, np.ndarray]:
    """:func:`quests_core.analysis.nucleation_study.nucleation_study` of one trajectory (the
    one composition the CLI's ``nucleation`` prints), as the Nucleation tab's result;
    returns the result, dH_solid and cluster ids.

    The material constants are those of :func:`quests_core.analysis.cnt.cnt_constants`
    for the trajectory's element and the given ones (``settings.options.cnt_*``); a
    trajectory that is not Cu gets no band and no fit without them, only the clusters and
    a one-line note. The frames before nucleation are pooled with one critical band at
    their mean temperature, and their cluster-size distribution is fitted at that
    temperature the paper's way (unweighted least squares on log N, clusters sized by
    the constants' fit volume; :func:`fit_nucleation` refits with other weights or
    another fit volume).
    """
    from quests_core.analysis import cnt
    from quests_core.analysis.nucleation_study import nucleation_study

    species = traj.dataset.species
    element = species[0] if len(species) == 1 else None
    note, constants = "", None
    try:
        constants = cnt.cnt_constants(element, **settings.options.cnt_kwargs())
    except QuestsError as exc:
        note = (f"{traj.spec.name}: {str(exc).splitlines()[0]} (Advanced settings, CNT "
                "...); critical band and CNT fit skipped")
    # dH against the solid, then the clusters frame by frame, each part of the bar in
    # proportion to its expected cost
    (_, split), _ = Progress.plan([Progress.KERNEL_PER_PAIR * len(traj.x) * len(solid_x),
                                    Progress.CLUSTER_PER_ATOM * len(traj.x)])
    clusters_text = f"Solid-like clusters of {traj.spec.name}"

    def progress(step: str, done: int, total: int) -> None:
        part = min(done / max(total, 1), 1.0)
        if step == "dH":
            prog(split * part)
        else:
            prog(split + (1.0 - split) * part, clusters_text)

    study = nucleation_study(
        traj.x, solid_x, traj.dataset.structures, h,
        temperature=traj.dataset.frames["temperature"].to_numpy(float),
        constants=constants, note=note, method=settings.options.cluster_method,
        progress=progress, cancel=prog.cancel, n_threads=n_threads,
        **_kernel_options(settings),
    )
    sub = frames.loc[frames["source"] == traj.spec.name]
    c = study.constants
    result = NucleationResult(
        source=traj.spec.name,
        structure=sub["structure"].to_numpy(),
        frame=sub["frame"].to_numpy(np.int64),
        time=sub["time"].to_numpy(float),
        largest=study.largest,
        n_solid=study.n_solid,
        temperature=study.temperature,
        band_min=study.band_min,
        band_max=study.band_max,
        sizes=np.asarray(study.distribution.sizes),
        counts=np.asarray(study.distribution.counts),
        n_frames=int(study.distribution.n_frames),
        pre_frames=study.pooled,
        t_pooled=study.t_pooled,
        critical_band=study.critical_band,
        constants=None if c is None else {
            "element": c.element, "T_melt (K)": c.t_melt,
            "latent heat (kJ/mol)": c.latent_heat,
            "V_atom (Å^3)": c.v_atom, "gamma_SL range (J/m^2)": c.gamma_range,
            "V_atom fit (Å^3)": c.v_fit,
        },
        note=study.note,
        weights=study.weights,
        fit_v_atom=study.fit_v_atom,
    )
    return _with_fit(result, study.fit), study.dh, study.clusters.labels()


def _kernel_options(settings: RunSettings) -> dict[str, Any]:
    """``precision`` and ``backend`` of the run's core settings (the kernel's keywords
    without the thread count, which the job gives)."""
    kw = settings.core.kernel_kwargs()
    kw.pop("n_threads", None)
    return kw


#: :func:`fit_nucleation`'s "keep the result's own fit volume".
_OWN = object()


def fit_nucleation(result: NucleationResult, weights: str | None = None,
                   fit_v_atom: Any = _OWN) -> NucleationResult:
    """A new ``result`` with the CNT fit of its cluster-size distribution at its pooled
    temperature (:func:`quests_core.analysis.nucleation_study.fit_distribution`, the fit of
    :func:`~quests_core.analysis.nucleation_study.refit`) with ``weights`` (``"none"``,
    unweighted, the paper's, or ``"poisson"``; default: the result's own) and its
    clusters sized with ``fit_v_atom`` Å^3/atom (``None``: the constants' fit volume,
    Cu 11.78; default: the result's own). A fit that cannot be made leaves ``fit`` empty
    and says why in ``fit_error``. Cheap (a 3-parameter linear least-squares fit); the
    Nucleation view runs it off the event loop and stores the new result.
    """
    import dataclasses

    from quests_core.analysis import nucleation_study as nu

    weights = nu.check_weights(weights or result.weights)
    own_v = nu.check_fit_volume(result.fit_v_atom if fit_v_atom is _OWN else fit_v_atom)
    out = dataclasses.replace(result, weights=weights, fit_v_atom=own_v)
    v_fit = out.fit_volume() if result.constants is not None else float("nan")
    fit = nu.fit_distribution(result.sizes, result.counts, result.n_frames,
                              result.t_pooled, v_atom=v_fit, weights=weights)
    return _with_fit(out, fit)


def _with_fit(result: NucleationResult, fit) -> NucleationResult:
    """A new ``result`` showing ``fit`` (a :class:`quests_core.analysis.nucleation_study.
    NucleationFit`): the fit table of the Nucleation tab and its curve, or why not."""
    import dataclasses

    if fit.skipped:
        error = fit.skipped
    elif fit.failed:
        error = f"CNT fit failed: {fit.failed}"
    elif fit.problem:
        error = f"No reliable CNT fit: {fit.problem}"
    else:
        error = ""
    if error:
        return dataclasses.replace(result, fit=None, fit_curve=None, fit_error=error)
    f = fit.fit
    table = {
        "temperature (K)": result.t_pooled,
        "gamma_SL (J/m^2)": f.gamma_sl_j_m2,
        "gamma_SL error (J/m^2)": f.gamma_sl_err_j_m2,
        "dg_SL (eV/atom)": f.dg_sl_per_atom,
        "N0": f.n0,
        "N0 error": f.n0_err,
        "V_atom of the fit's cluster radii (Å^3)": f.v_atom,
        "V_atom of the critical band (Å^3)": float(result.constants["V_atom (Å^3)"]),
    }
    return dataclasses.replace(result, fit=table, fit_curve=fit.curve, fit_error="")


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
    read = Progress.READ_PER_BYTE * size
    rest = 5 * Progress.DESCRIPTOR_PER_ATOM * size / 75  # descriptors, dH, H, ...
    return float(np.clip(read / (read + rest), 0.02, 0.5))


def _h_pairs(counts: np.ndarray, settings: RunSettings) -> np.ndarray:
    """Kernel pairs of the per-frame H (exact: n^2; large frames sampled: n x sample)."""
    from quests_core.sampling import entropy_pairs

    exact = settings.options.exact_entropy
    return np.array([entropy_pairs(int(c), exact=exact) for c in counts], dtype=np.float64)


def _pipeline_plan(loaded: list[Loaded], settings: RunSettings, lo: float) -> dict:
    """Parts of the progress bar (``lo..1``) of the pipeline's steps after reading, in
    proportion to their expected cost (the cost model of :class:`Progress`).

    Keys: ``("descriptors", i)``, ``("dH", i)``, ``("H", i)`` for file ``i``,
    ``"learning"``, ``("overlap", "source")``, ``("overlap", "label")`` and
    ``("nucleation", i)`` for trajectory ``i``.
    """
    pair = Progress.KERNEL_PER_PAIR
    per_atom = Progress.DESCRIPTOR_PER_ATOM * (settings.core.k / 32) ** 2
    n = [it.dataset.n_atoms for it in loaded]
    n_ref = sum(m for m, it in zip(n, loaded, strict=True) if it.spec.role == "reference")
    steps: dict = {}
    for i, m in enumerate(n):
        steps[("descriptors", i)] = per_atom * m
    for i, it in enumerate(loaded):
        counts = it.dataset.frames["n_atoms"].to_numpy(np.float64)
        against = n_ref if n_ref else (counts[0] if len(counts) else 0.0)
        steps[("dH", i)] = pair * n[i] * against
        steps[("H", i)] = pair * float(np.sum(_h_pairs(counts, settings) + CALL_PAIRS))
    repeats = settings.options.learning_repeats
    steps["learning"] = pair * sum(
        _learning_cost(learning_sizes(m, settings.options.learning_max_n), repeats)
        for m in n if m >= 20
    )
    max_n = settings.options.overlap_max_n
    by_file = [min(m, max_n) for m in n]
    steps[("overlap", "source")] = (pair * (sum(by_file) ** 2 + len(by_file) ** 2 * CALL_PAIRS)
                                    if len(by_file) >= 2 else 0.0)
    frames = pd.concat([it.dataset.frames[["label", "n_atoms"]] for it in loaded])
    per_label = frames.groupby(frames["label"].astype(str), sort=False)["n_atoms"].sum()
    by_label = [min(int(m), max_n) for name, m in per_label.items() if name != ""]
    steps[("overlap", "label")] = (pair * (sum(by_label) ** 2 + len(by_label) ** 2 * CALL_PAIRS)
                                   if len(by_label) >= 2 else 0.0)
    solid = sum(m for m, it in zip(n, loaded, strict=True) if it.spec.role == "solid reference")
    for i, it in enumerate(loaded):  # every trajectory against the solid reference
        if it.spec.role == "trajectory":
            steps[("nucleation", i)] = (pair * n[i] * solid + Progress.CLUSTER_PER_ATOM * n[i]
                                        if solid else 0.0)
    return dict(zip(steps, Progress.plan(list(steps.values()), lo, 1.0), strict=True))


def run_pipeline(
    files: list[FileSpec],
    settings: RunSettings,
    progress: ProgressFn | None = None,
    cancel: threading.Event | Any | None = None,
    n_threads: int | None = None,
) -> Results:
    """Compute everything the views show.

    Parameters
    ----------
    files : list of FileSpec
        Files with roles ("reference", "test", "trajectory", "solid reference").
    settings : RunSettings
        :meth:`dashboard.state.ComputeSettings.frozen` of the Data view's settings.
    progress : callable, optional
        ``progress(fraction, text)``.
    cancel : threading.Event-like, optional
        When set, the pipeline raises :class:`quests_core.errors.Cancelled` at the next
        block.

    Returns
    -------
    Results

    Notes
    -----
    dH of every atom is computed against the union of the reference files.
    Without a reference file, each trajectory is compared with its own first
    frame (and a solid reference with itself); a test file then needs a
    reference. The reference set and h (the volume rule of the reference files'
    frames, else of each file's first frame) come from
    :func:`quests_core.loading.reference`, the CLI's policy too. Overlap and
    learning curves are computed on random subsets of at most
    ``overlap_max_n`` / ``learning_max_n`` environments.
    """
    if not files:
        raise QuestsError("no files chosen: pick files in the data directory or upload one")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise QuestsError("two files have the same name; remove one")
    core = settings.core
    prog = Progress(progress, cancel)
    timings: dict[str, float] = {}
    warnings: list[str] = []
    t0 = time.perf_counter()

    read_end = _read_share(files)
    prog.stage(0.0, read_end, "Reading files")
    loaded = load_files(files, prog)
    warnings.extend(file_warnings(loaded))
    timings["read"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    spans = _pipeline_plan(loaded, settings, read_end)
    for i, it in enumerate(loaded):
        prog.stage(*spans[("descriptors", i)], f"Descriptors of {it.spec.name}")
        it.x = file_descriptors(it.dataset, core, prog, n_threads, it.spec.name)
    timings["descriptors"] = time.perf_counter() - t1

    # the reference and h: the core's one policy (quests_core.loading.reference)
    ref = reference_of(loaded, core)
    h = ref.h
    if ref.self_reference:
        lonely = [it.spec.name for it in loaded if it.spec.role == "test"]
        if lonely:
            raise QuestsError(
                f"{', '.join(lonely)}: a test file needs a reference file; give one file the "
                "role 'reference'"
            )
        from quests_core.trajectory import self_reference_problem

        for it in loaded:  # frame 0 as the reference of a big run: refused, not n^2
            problem = self_reference_problem(
                it.spec.name, int(it.dataset.frames["n_atoms"].iat[0]), len(it.x),
                remedy="give a file the role 'reference' (e.g. the training set, or a few "
                "frames of this run)")
            if problem:
                raise QuestsError(problem)
        reference = "first frame of each file (no reference file chosen)"
    else:
        reference = (" + ".join(it.spec.name for it in ref.items)
                     + f" ({len(ref.x)} environments)")

    # ---- per-atom dH and per-frame H
    t2 = time.perf_counter()
    from quests_core.sampling import frame_entropy

    exact_h = settings.options.exact_entropy
    frame_parts, atom_parts, offset = [], [], 0
    for i, it in enumerate(loaded):
        prog.stage(*spans[("dH", i)], f"dH of {it.spec.name}")
        dh = delta(it.x, ref.of(it), h, prog, n_threads, **_kernel_options(settings))
        prog.stage(*spans[("H", i)], f"H per frame of {it.spec.name}")
        frames = it.dataset.frames.copy()
        counts = frames["n_atoms"].to_numpy(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        hs = np.empty(len(frames))
        h_err = np.zeros(len(frames))
        cost = np.cumsum(_h_pairs(counts, settings) + CALL_PAIRS)  # H of frame s
        cost /= cost[-1]
        for s, (a, c) in enumerate(zip(starts, counts, strict=True)):
            prog.check()
            # exact up to 40,000 atoms (or with the exact_entropy setting), else sampled
            est = frame_entropy(it.x[a : a + c], h, exact=exact_h,
                                seed=(core.seed, i, s),
                                n_threads=n_threads, cancel=prog.cancel,
                                **_kernel_options(settings),
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
    if core.bandwidth_rule == "fixed":
        try:
            h_volume = choose_bandwidth(core.replace(bandwidth_rule="volume"), loaded)
        except QuestsError:
            h_volume = None
        warnings.extend(bandwidth_advice(frames, "fixed", h, ref.self_reference, h_volume))

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
        h_columns, note = _overlap_bandwidths(frames, column, list(groups), settings)
        if note:
            warnings.append(note)
        if h_columns is not None:
            overlaps[title] = _overlap(groups, h_columns, settings, prog, n_threads,
                                       grouping=title)
    timings["overlap"] = time.perf_counter() - t4

    # ---- nucleation: every trajectory against the solid reference
    t5 = time.perf_counter()
    nucleation: dict[str, NucleationResult] = {}
    note = ""
    solids = [it for it in loaded if it.spec.role == "solid reference"]
    trajs = [(i, it) for i, it in enumerate(loaded) if it.spec.role == "trajectory"]
    if not solids or not trajs:
        note = "Give one file the role 'solid reference' and one 'trajectory' to find clusters."
    else:
        solid_x = np.concatenate([it.x for it in solids])
        frames["largest_cluster"] = np.nan
        atoms["dH_solid"] = np.float32(np.nan)
        atoms["cluster"] = np.int32(-1)
        for i, traj in trajs:
            prog.stage(*spans[("nucleation", i)], f"dH of {traj.spec.name} against the solid")
            result, dh_solid, labels_ = _nucleation(
                traj, solid_x, frames, h, settings, prog, n_threads
            )
            nucleation[traj.spec.name] = result
            rows = frames.index[frames["source"] == traj.spec.name]
            frames.loc[rows, "largest_cluster"] = result.largest
            sel = (atoms["source"] == traj.spec.name).to_numpy()
            atoms.loc[sel, "dH_solid"] = dh_solid.astype(np.float32)
            atoms.loc[sel, "cluster"] = labels_.astype(np.int32)
    timings["nucleation"] = time.perf_counter() - t5
    timings["total"] = time.perf_counter() - t0
    prog.stage(1.0, 1.0, "Done")
    return Results(
        frames=frames,
        atoms=atoms,
        h=h,
        k=core.k,
        cutoff=core.cutoff,
        reference=reference,
        files=list(files),
        learning=learning,
        overlap=overlaps,
        nucleations=nucleation,
        nucleation_note=note,
        timings=timings,
        warnings=warnings,
        species=core.species,
        precision=core.precision,
    )


# ----------------------------------------------------------------------------
# running a job off the event loop
# ----------------------------------------------------------------------------


def pipeline_task(files, settings, report, cancel, n_threads):
    """The Data tab's task (the default of :class:`dashboard.jobs.ComputeJob`)."""
    return run_pipeline(files, settings, report, cancel, n_threads=n_threads)
