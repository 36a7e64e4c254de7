"""The transition module quests_core.analysis.nucleation: the former names still work."""

from __future__ import annotations

import numpy as np
import pytest

from quests_core.analysis import clusters, cnt
from quests_core.analysis import nucleation as nuc

#: names the dashboard imports from quests_core.analysis.nucleation
DASHBOARD_NAMES = ("trajectory_clusters", "TrajectoryClusters", "cluster_size_distribution",
                   "critical_size_band", "fit_cnt_distribution")


def test_reexports_are_the_new_objects():
    for name in ("trajectory_clusters", "TrajectoryClusters", "cluster_size_distribution",
                 "find_clusters", "atoms_clusters", "neighbor_pairs", "Clusters",
                 "solid_like_delta_entropy", "SizeDistribution", "CLUSTER_METHODS",
                 "DEFAULT_CLUSTER_CUTOFF"):
        assert getattr(nuc, name) is getattr(clusters, name)
    for name in ("CNTFit", "CriticalBand", "cnt_critical_radius", "pre_nucleation_frames",
                 "CU_T_MELT", "CU_V_ATOM", "CU_LATENT_HEAT", "CU_GAMMA_SL_RANGE",
                 "j_per_m2_to_ev_per_a2", "size_to_radius"):
        assert getattr(nuc, name) is getattr(cnt, name)
    assert all(hasattr(nuc, name) for name in DASHBOARD_NAMES)


def test_former_signatures_use_the_cu_constants():
    temps = np.array([900.0, 1000.0, 1400.0])
    old = nuc.critical_size_band(temps)
    new = cnt.critical_size_band(temps, cnt.CU_GAMMA_SL_RANGE, **cnt.CU.kwargs())
    np.testing.assert_array_equal(old.n_min, new.n_min)
    np.testing.assert_array_equal(old.r_max, new.r_max)
    sizes = np.arange(1, 12)
    counts = np.round(4000 * np.exp(-0.9 * sizes ** (2 / 3)) + 1)
    a = nuc.fit_cnt_distribution(sizes, counts, 1000.0)
    b = cnt.fit_cnt_distribution(sizes, counts, 1000.0, v_atom=cnt.CU_V_ATOM)
    assert a.gamma_sl == pytest.approx(b.gamma_sl, rel=1e-15) and a.weights == "poisson"
