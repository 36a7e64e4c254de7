"""``quests-dashboard uq TEST -r TRAIN``: dH against a training set versus model error.

Every test atom gets its dH against the training environments (``--reference``
files, structure or descriptor files, or the test file's structures labelled
``--reference-label``) and its model error (``--error-key``: a per-atom error or
error vector; ``--forces PRED REF``: the norm of the force difference).
:func:`quests_core.analysis.uncertainty.uncertainty_study` (the Uncertainty tab's)
computes dH at ``--precision`` and gives the running mean of the error against dH
(the table) and the share of high-error atoms that dH > 0 catches (the summary).
h is the fixed bandwidth or, with ``--bandwidth auto``, the volume rule of the
training structures.
``--output``: the binned table; ``--atoms``: per-atom dH and error.

Memory: the descriptors of the test and training files, and the test
structures (read once for their per-atom arrays).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError

from .loading import atom_mask, load_one, load_reference
from .output import RESULT_SUFFIXES, finish, write_table_to
from .parser import (
    add_reference_options,
    bandwidth,
    batch_parser,
    positive_float,
    positive_int,
    prepare,
)
from .progress import kernel_bar

NAME = "uq"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    from quests_core.analysis import uncertainty as uq

    p = batch_parser(sub, common, NAME, files=None,
                     help="dH against a training set versus per-atom model error",
                     description="dH of test atoms against a training set versus their model "
                     "error. --output: the binned table; --atoms: per-atom dH and error.")
    p.add_argument("test", help="test structures (with per-atom errors or forces)")
    add_reference_options(
        p, required=False, of="test file",
        help_text="training structure files, or descriptor files (.npz/.npy) written by "
        "'descriptors -o'",
    )
    p.add_argument("--test-label", help="keep the test structures with this label")
    p.add_argument("--reference-label",
                   help="training structures with this label (from TEST without --reference)")
    p.add_argument("--error-key", help="per-atom error array (n,) or error vectors (n, 3)")
    p.add_argument("--forces", nargs=2, metavar=("PRED", "REF"), help="two per-atom force arrays")
    p.add_argument("--bins", type=positive_int, default=uq.DEFAULT_BINS,
                   help=f"dH bins (default {uq.DEFAULT_BINS})")
    p.add_argument("--window", type=positive_float, default=uq.DEFAULT_WINDOW,
                   help=f"half-width of the running mean in bins (default {uq.DEFAULT_WINDOW})")
    p.add_argument("--error-threshold", type=positive_float,
                   help=f"high error above this (default: the {uq.DEFAULT_ERROR_QUANTILE:g} "
                   "quantile of the errors)")
    p.add_argument("--atoms", help="per-atom dH and error (.csv, .parquet or .json)")
    p.set_defaults(func=run, outputs=RESULT_SUFFIXES, extra_outputs={"atoms": RESULT_SUFFIXES})


def run(args: argparse.Namespace) -> int:
    """``uq TEST (--reference TRAIN... | --reference-label L) (--error-key K | --forces P R)``"""
    from quests_core.analysis import uncertainty as uq

    if not args.reference and args.reference_label is None:
        raise QuestsError("missing reference: give --reference TRAIN or --reference-label")
    if not args.error_key and not args.forces:
        raise QuestsError("give --error-key KEY or --forces PRED REF")
    settings, _ = prepare(args)
    batch, full, x_full = load_one(args.test, args, settings, role="test")
    test, y = _labelled(full, x_full, args.test_label, args.test, "")
    skipped = list(batch.skipped)
    if args.reference:
        ref, ref_ds, x_ref = load_reference(args, settings)
        skipped += ref.skipped
        if args.reference_label is not None:
            if ref_ds is None:
                raise QuestsError("--reference-label needs training structures, not descriptor "
                                  "files")
            ref_ds, x_ref = _labelled(ref_ds, x_ref, args.reference_label,
                                      " ".join(args.reference), "reference ")
    else:
        ref_ds, x_ref = _labelled(full, x_full, args.reference_label, args.test, "reference ")
    error = _errors(args, test)
    if len(error) != len(y):
        raise QuestsError(f"{len(error)} errors for {len(y)} atoms", source=args.test)
    h = bandwidth(settings, ref_ds)
    with kernel_bar(args, "dH") as progress:
        res = uq.uncertainty_study(
            y, x_ref, error, h, n_bins=args.bins, window=args.window,
            threshold=args.error_threshold, test_name=args.test,
            reference_name=" ".join(args.reference or [args.test]), progress=progress,
            **settings.kernel_kwargs(),
        )
    bins = pd.DataFrame(
        {
            "dH_center": res.running.centers,
            "mean_error": res.running.mean,
            "std_error": res.running.std,
            "count": res.running.count,
        }
    )
    r = res.recall
    summary = {
        "test_atoms": int(len(y)),
        "reference_atoms": int(len(x_ref)),
        "bandwidth": h,
        "frac_dH_positive": r.frac_flagged,
        "error_threshold": r.threshold,
        "high_error_atoms": r.n_high,
        "recall": r.recall,
        "precision": r.precision,
        "meaning": "recall: share of the atoms with error > error_threshold that have dH > 0; "
        "precision: share of the atoms with dH > 0 that have a high error",
    }
    if args.atoms:
        per_atom = test.atoms_table(positions=False)[["structure", "frame", "atom"]].copy()
        per_atom["dH"] = res.dh
        per_atom["force_error"] = error
        write_table_to(args.atoms, per_atom)
    return finish(args, skipped, summary, bins)


def _labelled(dataset: Any, x: np.ndarray, label: str | None, source: str, what: str):
    """The structures of ``dataset`` with ``label`` and their descriptor rows (all: None)."""
    if label is None:
        return dataset, x
    rows = (dataset.frames["label"] == label).to_numpy()
    if not rows.any():
        raise QuestsError(f"no {what}structure with label {label!r}", source=source)
    return dataset.subset(rows), x[atom_mask(dataset, rows)]


def _errors(args: argparse.Namespace, test: Any) -> np.ndarray:
    """The per-atom model error of the test structures (``--error-key`` or ``--forces``)."""
    from quests_core.analysis import uncertainty as uq

    return uq.model_errors(list(test.iter_structures()), forces=args.forces,
                           key=args.error_key, source=args.test)
