"""``quests-dashboard phase-entropy A B``: entropy difference H_B - H_A at one bandwidth.

:func:`quests_core.analysis.thermo.phase_entropy_difference` on the cached
descriptors of the two files, both entropies at ``--precision``. The default
``--bandwidth auto`` is the volume rule: with ``--mode pooled`` (default, the
paper's convention) one bandwidth from the mean of the two sets' volumes per
atom, each set counted once however many frames it has (the ``volume_per_atom``
line of the summary says so); with
``--mode each`` a bandwidth per set from its own volume. A number given
to ``--bandwidth`` fixes one bandwidth for both. The volumes are the
atom-weighted mean volume per atom of each file's frames (or ``--volume-a``,
``--volume-b``). The number is a melting entropy only for the coexisting solid
and liquid at the melting point; an entropy drop along a trajectory is not one
(the ``note`` line of the summary says so).

Memory: the descriptors of both files.
"""

from __future__ import annotations

import argparse

import numpy as np

from .loading import load_one
from .output import RESULT_SUFFIXES, finish
from .parser import (
    AUTO,
    add_seed,
    batch_parser,
    common_parser,
    default_of,
    override_option,
    positive_float,
    positive_int,
    prepare,
)

NAME = "phase-entropy"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    from quests_core.analysis import thermo

    max_envs = default_of(thermo.phase_entropy_difference, "max_envs")
    p = batch_parser(
        sub,
        common_parser(),  # its own copy: the default of --bandwidth differs (auto)
        NAME,
        files=None,
        help="entropy difference between two sets of structures at one bandwidth",
        description="Information-entropy difference H_B - H_A (k_B/atom) between two sets of "
        "structures. Default bandwidth: the volume rule of the mean of the two sets' volumes "
        "per atom, each set counted once (the paper's convention); --mode each gives each set "
        "the bandwidth of its own volume; --bandwidth H fixes one. A melting entropy only for "
        "the coexisting solid and liquid at the melting point; an entropy drop along a "
        "trajectory is not one.",
    )
    p.add_argument("phase_a", help="structures of set A (e.g. the solid)")
    p.add_argument("phase_b", help="structures of set B (e.g. the liquid)")
    p.add_argument("--index-a", default=None, help="frames of A (default: --index)")
    p.add_argument("--index-b", default=None, help="frames of B (default: --index)")
    p.add_argument("--volume-a", type=positive_float,
                   help="Å^3/atom of A (default: from the cells)")
    p.add_argument("--volume-b", type=positive_float,
                   help="Å^3/atom of B (default: from the cells)")
    p.add_argument(
        "--mode",
        choices=thermo.BANDWIDTH_MODES,
        default=thermo.BANDWIDTH_MODES[0],
        help="with --bandwidth auto: pooled, one bandwidth from the mean of the volumes per "
        "atom of A and B, each set counted once whatever its frames (default, the paper's); "
        "each, a bandwidth per set from its own volume",
    )
    p.add_argument("--max-envs", type=positive_int, default=max_envs,
                   help=f"environments per set (default {max_envs})")
    add_seed(p, "seed of the subsampling")
    override_option(
        p, "bandwidth", AUTO,
        "kernel bandwidth h in 1/Å for both sets, or 'auto' (default) for the volume rule "
        "of --mode",
    )
    p.set_defaults(func=run, outputs=RESULT_SUFFIXES)


def run(args: argparse.Namespace) -> int:
    """``phase-entropy A B [--mode pooled|each] [--bandwidth auto|H]``"""
    from quests_core.analysis import thermo

    settings, _ = prepare(args)
    a, set_a, xa = load_one(args.phase_a, args, settings, role="set A", index=args.index_a)
    b, set_b, xb = load_one(args.phase_b, args, settings, role="set B", index=args.index_b)
    fixed = settings.bandwidth_rule == "fixed"
    va = args.volume_a if args.volume_a is not None or fixed else _volume(set_a)
    vb = args.volume_b if args.volume_b is not None or fixed else _volume(set_b)
    res = thermo.phase_entropy_difference(
        xa,
        xb,
        volume_a=va,
        volume_b=vb,
        h=settings.bandwidth if fixed else None,
        mode=args.mode,
        max_envs=args.max_envs,
        seed=settings.seed,
        **settings.kernel_kwargs(),
    )
    summary = {
        "A": args.phase_a,
        "B": args.phase_b,
        "volume_A": res.volume_a,
        "volume_B": res.volume_b,
        "volume_pooled": res.volume_pooled,
        "volume_per_atom": res.volume_text(),
        "h_A": res.h_a,
        "h_B": res.h_b,
        "H_A": res.entropy_a,
        "H_B": res.entropy_b,
        "delta_H": res.delta,
        "delta_H_J_per_mol_K": res.delta_j_per_mol_k,
        "environments_per_set": res.n_envs,
        "bandwidth_mode": res.mode,
        "note": res.describe(),
    }
    return finish(args, a.skipped + b.skipped, summary, None)


def _volume(dataset) -> float:
    """Atom-weighted mean volume per atom (Å^3/atom) of a dataset's frames (NaN if not periodic)."""
    frames = dataset.frames
    n = frames["n_atoms"].to_numpy(float)
    v = frames["volume_per_atom"].to_numpy(float)
    return float(np.sum(v * n) / np.sum(n))
