"""``quests-dashboard overlap FILE... [--by COLUMN]``: the overlap matrix.

Row i, column j: the fraction of the environments of group i with
dH(i | j) <= 0, computed by :func:`quests_core.overlaps.overlap_matrix` with
the h of each column (reference) group from
:func:`quests_core.loading.overlap_bandwidths` (one h for all with a fixed
bandwidth, the volume rule of each group with ``--bandwidth auto``; when a group
has no periodic cell, one h pooled over all groups, with a warning). The
progress bar counts kernel pairs.
"""

from __future__ import annotations

import argparse

import pandas as pd

from .loading import groups, load_files
from .output import RESULT_SUFFIXES, finish
from .parser import batch_parser, prepare
from .progress import kernel_bar

NAME = "overlap"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    p = batch_parser(
        sub,
        common,
        NAME,
        help="overlap matrix of files or labels",
        description="Overlap (fraction of row environments with dH <= 0 "
        "against the column) for every ordered pair of files or of "
        "values of --by.",
    )
    p.add_argument("--by", default=None, help="group by a per-frame column instead of by file")
    p.set_defaults(func=run, outputs=RESULT_SUFFIXES)


def run(args: argparse.Namespace) -> int:
    """``overlap FILE... [--by COLUMN]``"""
    import warnings

    from quests_core.loading import overlap_bandwidths
    from quests_core.notes import InputWarning
    from quests_core.overlaps import overlap_matrix

    settings, _ = prepare(args)
    batch = load_files(args.files, args, settings=settings)
    sets = groups(batch, args.by)
    names = [name for name, _, _ in sets]
    h, note = overlap_bandwidths({name: dataset.frames for name, dataset, _ in sets}, settings)
    if note:
        warnings.warn(InputWarning(f"overlap: {note}"), stacklevel=2)
    with kernel_bar(args, "overlap", unit=" pairs", unit_scale=True) as progress:
        result = overlap_matrix(
            {name: x for name, _, x in sets}, h, progress=progress, **settings.kernel_kwargs()
        )
    matrix = result.matrix
    table = pd.DataFrame(matrix, index=pd.Index(names, name="test/reference"), columns=names)
    summary = {
        "groups": len(names),
        "by": args.by or "file",
        "labels": names,
        "matrix": matrix.tolist(),
        "meaning": "row i, column j: fraction of environments of i with dH(i | j) <= 0",
    }
    return finish(args, batch.skipped, summary, table, index=True)
