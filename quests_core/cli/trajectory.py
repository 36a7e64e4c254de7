"""``quests-dashboard trajectory FILE [-r REF...]``: per-frame H and dH along a trajectory.

Each frame goes through :func:`quests_core.trajectory.frame_statistics`: H of
the frame (exact up to ``--exact-max-atoms`` atoms, else sampled with its
standard error in ``H_stderr``; ``--exact-entropy`` forces exact H and first
prints the expected time), and the mean dH, max dH and fraction of atoms with
dH > 0 against the reference (default: the first selected frame). H and dH of
every frame use one bandwidth, the reference's (``--bandwidth auto``: its volume
rule), so that the curves of a run compare frames with each other (docs/spec.md
section 6). ``--output``: ``.csv/.parquet/.json`` (per-frame table) or
``.extxyz`` (frames with a per-atom dH array and the per-frame columns).

Memory: the trajectory's descriptors, the reference's, and one frame's dH
(all frames' dH only for an ``.extxyz`` output).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from .loading import load_one, load_reference, reference_set
from .output import RESULT_SUFFIXES, STRUCTURE_SUFFIXES, export_structures, finish
from .parser import (
    add_reference_options,
    add_seed,
    batch_parser,
    positive_float,
    positive_int,
    prepare,
)
from .progress import progress_bar, stage_bars

NAME = "trajectory"

#: per-frame columns of the table, after the frame's own columns
STAT_COLUMNS = ("H", "H_stderr", "mean_dH", "frac_novel", "max_dH")
FRAME_COLUMNS = ("structure", "source", "frame", "time", "n_atoms", "temperature")


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    from quests_core.sampling import (
        DEFAULT_MAX_SAMPLE,
        DEFAULT_TARGET_STDERR,
        EXACT_MAX_ATOMS,
        EXACT_MAX_ATOMS_ENV,
    )

    p = batch_parser(
        sub,
        common,
        NAME,
        files=None,
        help="per-frame H and dH of a trajectory",
        description="Per-frame entropy H, mean and max dH against a reference (default: "
        "the first selected frame) and the fraction of atoms with "
        "dH > 0. --output: .csv/.parquet/.json (per-frame table) or "
        ".extxyz (frames with a per-atom dH array).",
    )
    p.add_argument("file", help="trajectory file")
    add_reference_options(
        p, required=False, help_text="reference files (default: the first frame)", of="trajectory"
    )
    g = p.add_argument_group(
        "per-frame H",
        "H costs n^2 kernel pairs per frame. Frames above --exact-max-atoms atoms get an "
        "estimate from a random sample of atoms against all atoms of the frame, with its "
        "standard error in the column H_stderr (0 for exact frames).",
    )
    g.add_argument(
        "--exact-entropy",
        action="store_true",
        help="exact H for every frame, whatever its size (the expected time is printed first)",
    )
    g.add_argument(
        "--exact-max-atoms",
        type=positive_int,
        default=None,
        help=f"largest frame whose H is exact (default ${EXACT_MAX_ATOMS_ENV} or "
        f"{EXACT_MAX_ATOMS})",
    )
    g.add_argument(
        "--entropy-stderr",
        type=positive_float,
        default=DEFAULT_TARGET_STDERR,
        help=f"standard error (nats) aimed at by sampled H, within {DEFAULT_MAX_SAMPLE} sampled "
        f"atoms per frame (default {DEFAULT_TARGET_STDERR})",
    )
    add_seed(g, "seed of the sampled H")
    p.set_defaults(func=run, outputs=(*RESULT_SUFFIXES, *STRUCTURE_SUFFIXES))


def run(args: argparse.Namespace) -> int:
    """``trajectory FILE [--reference REF...]``"""
    from quests_core.errors import QuestsError
    from quests_core.sampling import exact_max_atoms
    from quests_core.trajectory import frame_statistics, self_reference_problem

    settings, suffix = prepare(args)
    traj, dataset, x = load_one(args.file, args, settings)
    frames = dataset.frames
    offsets = frames["atom_offset"].to_numpy()
    counts = frames["n_atoms"].to_numpy()
    skipped = list(traj.skipped)
    if args.reference:
        ref, _, ref_x = load_reference(args, settings)
        skipped += ref.skipped
        reference = ", ".join(it.path for it in ref.items)
        h_ref = reference_set(ref.items, settings).h
    else:
        problem = self_reference_problem(args.file, int(counts[0]), int(counts.sum()))
        if problem:
            raise QuestsError(problem)
        # the one policy of quests_core.loading: the first frame, and h of its volume
        self_ref = reference_set(traj.items, settings)
        ref_x = self_ref.of(traj.items[0])
        reference = f"first frame (frame {int(frames['frame'].iat[0])})"
        h_ref = self_ref.h
    threshold = exact_max_atoms(args.exact_max_atoms)
    if args.exact_entropy and (counts > threshold).any():
        _print_expected_time(x, offsets, counts, h_ref, settings)
    stats = []
    per_atom = np.empty(len(x)) if suffix in STRUCTURE_SUFFIXES else None
    bar = progress_bar(args, desc="frames", total=len(frames), unit="frame")
    try:
        for i, (start, n) in enumerate(zip(offsets, counts, strict=True)):
            with stage_bars(args, f"frame {i}") as progress:
                st, dh = frame_statistics(
                    x[start : start + n],
                    ref_x,
                    h_ref,
                    exact=args.exact_entropy,
                    threshold=threshold,
                    target_stderr=args.entropy_stderr,
                    seed=(settings.seed, i),
                    progress=progress,
                    **settings.kernel_kwargs(),
                )
            stats.append(st)
            if per_atom is not None:
                per_atom[start : start + n] = dh
            bar.update(1)
    finally:
        bar.close()
    columns = {name: np.array([getattr(st, name) for st in stats]) for name in STAT_COLUMNS}
    table = frames[list(FRAME_COLUMNS)].copy()
    for name, values in columns.items():
        table[name] = values
    rows = np.array([st.H_rows for st in stats], dtype=np.int64)
    summary = {
        "frames": len(frames),
        "reference": reference,
        "bandwidth": h_ref,
        "H_method": _h_method(rows, counts, threshold, args),
        "H_first": float(columns["H"][0]),
        "H_last": float(columns["H"][-1]),
        "mean_dH_last": float(columns["mean_dH"][-1]),
        "frac_novel_max": float(columns["frac_novel"].max()),
    }
    if not args.reference and settings.bandwidth_rule == "fixed":
        _narrow_bandwidth(args.file, columns["frac_novel"], counts, h_ref, settings, traj.items)
    if per_atom is not None:
        export_structures(dataset, args.output, columns=columns, arrays={"dH": per_atom})
    return finish(args, skipped, summary, table)


def _narrow_bandwidth(source, frac_novel, counts, h, settings, items) -> None:
    """Warn (one line, as the dashboard notes) when almost every atom is novel against
    the run's own first frame at a fixed h: the kernel is too narrow for the density."""
    import warnings

    from quests_core.errors import QuestsError
    from quests_core.notes import InputWarning, narrow_bandwidth_note, self_reference_novelty

    novel = self_reference_novelty(frac_novel, counts)
    try:
        h_volume = reference_set(items, settings.replace(bandwidth_rule="volume")).h
    except QuestsError:  # no cell: no volume rule to suggest
        h_volume = None
    note = narrow_bandwidth_note(source, novel, h, h_volume, "try --bandwidth auto")
    if note:
        warnings.warn(InputWarning(note), stacklevel=2)


def _print_expected_time(x, offsets, counts, h: float, settings) -> None:
    """The ``--exact-entropy`` line: kernel pairs of all frames' H and the expected time."""
    from quests_core.sampling import measure_pair_rate

    largest = int(np.argmax(counts))
    xl = x[offsets[largest] : offsets[largest] + counts[largest]]
    rate = measure_pair_rate(xl, h, rows=4096, **settings.kernel_kwargs())
    pairs = float(np.sum(counts.astype(np.float64) ** 2))
    print(
        f"--exact-entropy: {pairs:.3g} kernel pairs for H of {len(counts)} frame(s) "
        f"(n^2 per frame); expected {_duration(pairs / rate)} at the measured "
        f"{rate:.3g} pairs/s",
        file=sys.stderr,
        flush=True,
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _h_method(rows: np.ndarray, counts: np.ndarray, threshold: int, args: Any) -> str:
    """How H was computed, in words (the summary line ``H_method``)."""
    sampled = rows < counts
    if not sampled.any():
        why = "--exact-entropy" if args.exact_entropy else f"every frame <= {threshold} atoms"
        return f"exact for all {len(counts)} frame(s) ({why}); H_stderr = 0"
    lo, hi = int(rows[sampled].min()), int(rows[sampled].max())
    size = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return (
        f"sampled for {int(sampled.sum())} of {len(counts)} frame(s) with > {threshold} atoms: "
        f"{size} random atoms against all atoms of the frame (with a control variate), "
        f"standard error in H_stderr (target {args.entropy_stderr:g} nats; "
        "--exact-entropy for the exact value)"
    )
