"""``quests-dashboard active-learning FILE``: what each generation of data adds.

Every structure has a generation in ``atoms.info[--generation-key]``; per
generation, :func:`quests_core.analysis.active_learning.generation_study` (the
Active-learning tab's) gives the novelty (fraction of its environments with dH > 0 against all
earlier generations) and H and D of the cumulative dataset, on the file's
cached descriptors. h is the fixed bandwidth or, with ``--bandwidth auto``, the
volume rule of the whole file; every kernel call runs at ``--precision``.
``--output``: the table (``.csv/.parquet/.json``).

Memory: the descriptors of the file and its structures (read once for the
generation keys).
"""

from __future__ import annotations

import argparse

from quests_core.errors import QuestsError

from .loading import load_one, per_structure
from .output import RESULT_SUFFIXES, finish
from .parser import bandwidth, batch_parser, prepare

NAME = "active-learning"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    p = batch_parser(sub, common, NAME, files=None,
                     help="novelty per generation and information of the cumulative dataset",
                     description="Novelty of each generation against the earlier ones; H and "
                     "D of the cumulative dataset.")
    p.add_argument("dataset", help="structure file with a generation per structure")
    p.add_argument("--generation-key", default="generation",
                   help="info key of the generation (default 'generation')")
    p.set_defaults(func=run, outputs=RESULT_SUFFIXES)


def run(args: argparse.Namespace) -> int:
    """``active-learning FILE [--generation-key KEY]``"""
    from quests_core.analysis import active_learning as al
    from quests_core.io import locate_error

    settings, _ = prepare(args)
    batch, dataset, x = load_one(args.dataset, args, settings)
    structures = list(dataset.iter_structures())
    try:
        generations = al.generation_labels(structures, args.generation_key)
    except QuestsError as exc:
        raise locate_error(exc, structures, source=args.dataset) from None
    h = bandwidth(settings, dataset)
    report = al.generation_study(per_structure(dataset, x), generations, h=h,
                                 **settings.kernel_kwargs()).report
    summary = {
        "structures": len(dataset),
        "environments": int(len(x)),
        "generations": int(len(report)),
        "bandwidth": h,
    }
    return finish(args, batch.skipped, summary, report)
