"""``quests-dashboard nucleation TRAJ -r SOLID``: solid-like clusters per frame and CNT.

Every atom of every frame gets its dH against the solid reference (structure
or descriptor files) on the trajectory's cached descriptors; atoms with
dH <= ``--threshold`` are solid-like and are joined into clusters within
``--cluster-cutoff`` Å (:func:`quests_core.analysis.clusters.atoms_clusters`).
The table has one row per frame (solid-like atoms, largest cluster, mean dH).
The frames chosen by ``--frames`` are pooled: their cluster-size distribution,
one critical-size band of classical nucleation theory at their mean
temperature (:func:`quests_core.analysis.cnt.pooled_critical_band`) and, with
``--fit``, the CNT fit of the distribution at that temperature: unweighted
least squares on log N by default, the paper's (``--fit-weights poisson``: each
size weighted with its count). The material constants default to the paper's
Cu values for a Cu trajectory only
(:func:`quests_core.analysis.cnt.cnt_constants`), with two volumes per atom as
in the paper: the band's (``--v-atom``/``--density``/``--number-density``,
Cu 12.893 Å^3/atom) and the one that sizes the fit's clusters
(``--fit-v-atom``/``--fit-density``, Cu 11.78 Å^3/atom from 8.96 g/cm^3; any
other element: the band's). The summary names the weighting and both volumes. h is the fixed
bandwidth or, with ``--bandwidth auto``, the volume rule of the reference.

Outputs: ``--output`` (per-frame table), ``--distribution`` (size
distribution), ``--extxyz`` (the frames with per-atom dH and cluster ids).

The composition (dH, clusters, pooled frames, band, fit) is
:func:`quests_core.analysis.nucleation_study.nucleation_study`, the one the dashboard
draws.

Memory: the descriptors of the trajectory and the reference, the per-atom dH and
cluster ids, one frame's structure at a time.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError

from .loading import load_one, load_reference
from .output import (
    RESULT_SUFFIXES,
    STRUCTURE_SUFFIXES,
    export_structures,
    finish,
    print_table,
    write_table_to,
)
from .parser import add_reference_options, bandwidth, batch_parser, positive_float, prepare
from .progress import stage_bars

NAME = "nucleation"

#: option -> the words of :func:`quests_core.analysis.cnt.cnt_constants`'s message it answers
_CONSTANT_OPTIONS = (
    ("the density (g/cm^3)", "--density (g/cm^3)"),
    ("the number density (atoms/Å^3)", "--number-density (atoms/Å^3)"),
    ("the volume per atom (Å^3)", "--v-atom (Å^3)"),
    ("the melting temperature (K)", "--t-melt (K)"),
    ("the latent heat (kJ/mol)", "--latent-heat (kJ/mol)"),
    ("the interfacial energy range (J/m^2)", "--gamma-min/--gamma-max (J/m^2)"),
)


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    from quests_core.analysis import clusters as cl
    from quests_core.analysis import cnt

    p = batch_parser(sub, common, NAME, files=None,
                     help="solid-like clusters per frame (dH <= 0 against a solid) and CNT",
                     description="Largest solid-like cluster per frame, the cluster-size "
                     "distribution of the pooled frames, one CNT critical-size band at their "
                     "mean temperature and the CNT fit. --output: per-frame table; "
                     "--distribution: size distribution; --extxyz: frames with per-atom dH "
                     "and cluster ids.")
    p.add_argument("trajectory", help="trajectory file")
    add_reference_options(
        p, required=True, of="trajectory",
        help_text="solid reference: structure files or descriptor files (.npz/.npy)",
    )
    g = p.add_argument_group("clusters")
    g.add_argument("--threshold", type=float, default=0.0,
                   help="solid-like if dH <= this (default 0)")
    g.add_argument("--cluster-cutoff", type=positive_float, default=cl.DEFAULT_CLUSTER_CUTOFF,
                   help=f"cluster edge in Å (default {cl.DEFAULT_CLUSTER_CUTOFF})")
    g.add_argument("--clusters", choices=cl.CLUSTER_METHODS, default=cl.CLUSTER_METHODS[0],
                   help=f"cluster components (default {cl.CLUSTER_METHODS[0]})")
    g.add_argument("--frames", default="pre",
                   help="frames pooled in the size distribution, band and fit: 'pre' (default: "
                   "the pre-nucleation frames, chosen together with their one band as the "
                   "dashboard does, quests_core.analysis.cnt.pre_nucleation_pool), 'all', or "
                   "positions in the selected frames ('start:stop:step' or an integer)")
    c = p.add_argument_group(
        "classical nucleation theory",
        "material constants; the defaults are the paper's Cu EAM values and apply only to a "
        "Cu trajectory: give them for any other",
    )
    c.add_argument("--t-melt", type=positive_float,
                   help=f"melting temperature, K (Cu: {cnt.CU_T_MELT:g})")
    c.add_argument("--latent-heat", type=positive_float,
                   help=f"latent heat of melting, kJ/mol (Cu: {cnt.CU_LATENT_HEAT:g})")
    vol = c.add_mutually_exclusive_group()
    vol.add_argument("--v-atom", type=positive_float,
                     help="volume per atom of the solid for the critical band, Å^3/atom "
                     f"(Cu: {cnt.CU_V_ATOM:g})")
    vol.add_argument("--density", type=positive_float,
                     help="mass density of the solid for the critical band, g/cm^3")
    vol.add_argument("--number-density", type=positive_float,
                     help="atoms per Å^3 of the solid for the critical band")
    fvol = c.add_mutually_exclusive_group()
    fvol.add_argument("--fit-v-atom", type=positive_float,
                      help="volume per atom that sizes the clusters of the CNT fit, Å^3/atom "
                      f"(Cu: {cnt.CU_FIT_V_ATOM:.4g}, the paper's {cnt.CU_FIT_DENSITY:g} g/cm^3; "
                      "other elements: the band's volume)")
    fvol.add_argument("--fit-density", type=positive_float,
                      help="mass density that sizes the clusters of the CNT fit, g/cm^3 "
                      f"(Cu: {cnt.CU_FIT_DENSITY:g})")
    c.add_argument("--gamma-min", type=positive_float,
                   help=f"interfacial energy, J/m^2 (Cu: {cnt.CU_GAMMA_SL_RANGE[0]:g})")
    c.add_argument("--gamma-max", type=positive_float,
                   help=f"interfacial energy, J/m^2 (Cu: {cnt.CU_GAMMA_SL_RANGE[1]:g})")
    c.add_argument("--fit", action="store_true", help="fit the size distribution to CNT")
    c.add_argument("--fit-weights", "--weights", dest="weights", choices=cnt.FIT_WEIGHTS,
                   default=cnt.FIT_WEIGHTS[0],
                   help=f"CNT fit: none (unweighted least squares on log N, the paper's; "
                   f"default {cnt.FIT_WEIGHTS[0]}) or poisson (each size weighted with its "
                   "count, the large-count maximum-likelihood approximation)")
    o = p.add_argument_group("more outputs")
    o.add_argument("--distribution", help="cluster-size distribution (.csv, .parquet or .json)")
    o.add_argument("--extxyz", help="trajectory with per-atom dH and cluster ids (.extxyz)")
    p.set_defaults(
        func=run,
        outputs=RESULT_SUFFIXES,
        extra_outputs={"distribution": RESULT_SUFFIXES, "extxyz": STRUCTURE_SUFFIXES},
    )


def cnt_constants(args: argparse.Namespace, species: Sequence[str], source: str):
    """The CNT constants of the options; the paper's Cu values only for a Cu trajectory."""
    from quests_core.analysis import cnt

    gamma = None
    if args.gamma_min is not None or args.gamma_max is not None:
        if args.gamma_min is None or args.gamma_max is None:
            raise QuestsError("give both --gamma-min and --gamma-max (J/m^2)")
        gamma = (args.gamma_min, args.gamma_max)
    try:
        return cnt.cnt_constants(
            species[0] if len(species) == 1 else None,
            t_melt=args.t_melt, latent_heat=args.latent_heat, gamma_range=gamma,
            v_atom=args.v_atom, density=args.density, number_density=args.number_density,
            fit_v_atom=args.fit_v_atom, fit_density=args.fit_density,
        )
    except QuestsError as exc:
        text = str(exc)
        for words, option in _CONSTANT_OPTIONS:
            text = text.replace(words, option)
        raise QuestsError(text, source=source) from None


def frames_selection(text: str | None, n: int) -> list[int]:
    """Positions of the frames of ``--frames`` (``"all"``, ``"5"``, ``"10:"``, ``"::2"``)."""
    if text in (None, "all"):
        return list(range(n))
    from quests_core.io import parse_index

    idx = parse_index(text)
    if isinstance(idx, int):
        if not -n <= idx < n:
            raise QuestsError(f"--frames {text}: frame {idx} is out of range ({n} frames)")
        return [idx % n]
    frames = list(range(n))[idx]
    if not frames:
        raise QuestsError(f"--frames {text}: no frames selected ({n} frames)")
    return frames


def run(args: argparse.Namespace) -> int:
    """``nucleation TRAJ --reference SOLID... [--frames F] [--fit]``"""
    from quests_core.analysis.nucleation_study import nucleation_study

    settings, _ = prepare(args)
    batch, traj, x = load_one(args.trajectory, args, settings, role="trajectory")
    constants = cnt_constants(args, traj.species, args.trajectory)
    chosen = None if args.frames == "pre" else frames_selection(args.frames, len(traj))
    ref, ref_ds, x_ref = load_reference(args, settings)
    h = bandwidth(settings, ref_ds)
    with stage_bars(args, "of the trajectory") as progress:
        study = nucleation_study(
            x, x_ref, traj.iter_structures(), h,
            temperature=traj.frames["temperature"].to_numpy(float), constants=constants,
            frames=chosen, threshold=args.threshold, cluster_cutoff=args.cluster_cutoff,
            method=args.clusters, weights=args.weights, progress=progress,
            **settings.kernel_kwargs(),
        )
    table = traj.frames[["structure", "frame", "time", "temperature", "n_atoms"]].copy()
    table["n_solid"] = study.n_solid
    table["largest_cluster"] = study.largest
    table["mean_dH"] = study.mean_dh
    dist = study.distribution
    sizes = pd.DataFrame({"size": dist.sizes, "count": dist.counts, "per_frame": dist.per_frame})
    summary: dict[str, Any] = {
        "frames": len(traj),
        "reference": ", ".join(it.path for it in ref.items),
        "bandwidth": h,
        "clusters": args.clusters,
        "largest_cluster_max": int(study.largest.max()) if len(study.largest) else 0,
        "pooled_frames": len(study.pooled),
    }
    summary.update(_cnt_summary(args, study))
    if args.extxyz:
        export_structures(
            traj, args.extxyz, columns={"largest_cluster": study.largest},
            arrays={"dH": study.dh, "cluster": study.clusters.labels()},
        )
    write_table_to(args.distribution, sizes)
    code = finish(args, batch.skipped + ref.skipped, summary, table)
    print(f"\ncluster sizes over the {dist.n_frames} pooled frames ({args.clusters} components):")
    print_table(sizes)
    return code


def _cnt_summary(args, study) -> dict:
    """The pooled critical band (and ``--fit``) of the summary, with the constants used."""
    constants = study.constants
    lo, hi = constants.gamma_range
    out: dict[str, Any] = {
        "T_melt_K": constants.t_melt,
        "latent_heat_kJ_mol": constants.latent_heat,
        "V_atom_A3": constants.v_atom,
        "V_atom_fit_A3": constants.v_fit,
        "gamma_SL_J_m2": [lo, hi],
    }
    if study.band is None:
        if not np.all(np.isfinite(study.temperature[study.pooled])):
            if args.fit:
                raise QuestsError("the CNT fit needs the temperature of every pooled frame",
                                  source=args.trajectory)
            out["critical_band"] = "none: no temperature for every pooled frame"
            return out
        if args.fit:
            raise QuestsError("the CNT fit needs a pooled frame below the melting point",
                              source=args.trajectory)
        out["critical_band"] = "none: no frame below the melting point"
        return out
    band = study.band
    out.update({
        "T_pooled_K": study.t_pooled,
        "n_star_min": float(band.n_min[0]),
        "n_star_max": float(band.n_max[0]),
        "r_star_min_A": float(band.r_min[0]),
        "r_star_max_A": float(band.r_max[0]),
    })
    if args.fit:
        result = study.fit
        if result.failed:
            raise QuestsError(result.failed)
        fit = result.fit
        out.update({"fit_weights": fit.weights, "fit_note": fit.describe(constants.v_atom)})
        if result.problem:  # numbers outside their physical bounds are not printed as values
            out["fit"] = f"no reliable fit: {result.problem}"
            return out
        out.update({
            "fit_N0": fit.n0,
            "fit_N0_err": fit.n0_err,
            "fit_dg_SL_eV_A3": fit.dg_sl,
            "fit_dg_SL_err_eV_A3": fit.dg_sl_err,
            "fit_dg_SL_eV_atom": fit.dg_sl_per_atom,
            "fit_gamma_SL_J_m2": fit.gamma_sl_j_m2,
            "fit_gamma_SL_err_J_m2": fit.gamma_sl_err_j_m2,
        })
    return out
