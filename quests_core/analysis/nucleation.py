"""Transition module: the names of the former nucleation module, re-exported.

The analysis now lives in two modules:

- :mod:`quests_core.analysis.clusters`: neighbour pairs, graph components,
  solid-like clusters of frames and trajectories, size distributions;
- :mod:`quests_core.analysis.cnt`: units, material constants and classical
  nucleation theory (critical radius and band, pre-nucleation frames, fit).

New code imports those. This module keeps every name the dashboard imports
(``trajectory_clusters``, ``TrajectoryClusters``, ``cluster_size_distribution``,
``critical_size_band``, ``fit_cnt_distribution``) and the other former names
importable. Two differ from their :mod:`~quests_core.analysis.cnt` versions:
:func:`critical_size_band` and :func:`fit_cnt_distribution` here keep the
former signatures, whose material constants default to the Cu EAM values of
the paper (the callers of this module analyse Cu); the ``cnt`` versions take
every constant explicitly.

Invariants: no computation of its own; memory as in the two modules.
"""

from __future__ import annotations

import numpy as np

from quests_core.analysis import cnt as _cnt
from quests_core.analysis.clusters import (  # noqa: F401 (re-exports)
    CLUSTER_METHODS,
    DEFAULT_CLUSTER_CUTOFF,
    Clusters,
    SizeDistribution,
    TrajectoryClusters,
    atoms_clusters,
    biconnected_component_sets,
    cluster_size_distribution,
    connected_component_sets,
    find_clusters,
    neighbor_pairs,
    solid_like_delta_entropy,
    trajectory_clusters,
)
from quests_core.analysis.cnt import (  # noqa: F401 (re-exports)
    AVOGADRO,
    BOLTZMANN_EV,
    CU_GAMMA_SL_RANGE,
    CU_LATENT_HEAT,
    CU_T_MELT,
    CU_V_ATOM,
    ELEMENTARY_CHARGE,
    J_PER_M2_TO_EV_PER_A2,
    KJ_PER_MOL_TO_EV_PER_ATOM,
    CNTFit,
    CriticalBand,
    cnt_critical_radius,
    cnt_log_distribution,
    ev_per_a2_to_j_per_m2,
    j_per_m2_to_ev_per_a2,
    kj_per_mol_to_ev_per_atom,
    latent_heat_per_volume,
    pre_nucleation_frames,
    radius_to_size,
    size_to_radius,
)


def critical_size_band(
    temperature: float | np.ndarray,
    gamma_range: tuple[float, float] = CU_GAMMA_SL_RANGE,
    *,
    t_melt: float = CU_T_MELT,
    latent_heat: float = CU_LATENT_HEAT,
    v_atom: float = CU_V_ATOM,
) -> CriticalBand:
    """:func:`quests_core.analysis.cnt.critical_size_band` with the Cu constants as defaults."""
    return _cnt.critical_size_band(temperature, gamma_range, t_melt=t_melt,
                                   latent_heat=latent_heat, v_atom=v_atom)


def fit_cnt_distribution(
    sizes: np.ndarray,
    counts: np.ndarray,
    temperature: float,
    *,
    v_atom: float = CU_V_ATOM,
    weights: str = _cnt.FIT_WEIGHTS[0],
) -> CNTFit:
    """:func:`quests_core.analysis.cnt.fit_cnt_distribution` with Cu's volume per atom."""
    return _cnt.fit_cnt_distribution(sizes, counts, temperature, v_atom=v_atom, weights=weights)
