"""``quests-dashboard entropy FILE... [--by COLUMN]``: H and diversity D per group.

A group is a file, or the frames sharing a value of a per-frame column
(``--by label``). Per group: structures, atoms, H, D = logsumexp(dH of every
environment against the group itself), log n (the largest H of n points) and h.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from .loading import groups, load_files
from .output import RESULT_SUFFIXES, finish
from .parser import bandwidth, batch_parser, prepare
from .progress import kernel_bar

NAME = "entropy"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    p = batch_parser(
        sub,
        common,
        NAME,
        help="entropy H and diversity D",
        description="Information entropy H and diversity D of each file, or of "
        "each value of a per-frame column (--by).",
    )
    p.add_argument(
        "--by", default=None, help="group by a per-frame column (label, generation, source, ...)"
    )
    p.set_defaults(func=run, outputs=RESULT_SUFFIXES)


def run(args: argparse.Namespace) -> int:
    """``entropy FILE... [--by COLUMN]``"""
    from scipy.special import logsumexp

    import quests_core as qc

    settings, _ = prepare(args)
    batch = load_files(args.files, args, settings=settings)
    rows = []
    for name, dataset, x in groups(batch, args.by):
        h = bandwidth(settings, dataset)
        with kernel_bar(args, f"H {name}") as progress:
            H, dh = qc.entropy_and_delta(x, h, progress=progress, **settings.kernel_kwargs())
        rows.append(
            {
                "group": name,
                "structures": len(dataset),
                "atoms": int(x.shape[0]),
                "H": float(H),
                "D": float(logsumexp(np.asarray(dh))),
                "log_n": float(np.log(x.shape[0])),
                "bandwidth": h,
            }
        )
    summary = {
        "groups": len(rows),
        "by": args.by or "file",
        "k": settings.k,
        "cutoff": settings.cutoff,
    }
    return finish(args, batch.skipped, summary, pd.DataFrame(rows))
