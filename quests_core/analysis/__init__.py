"""Science analyses built on the QUESTS core.

Submodules (pure functions on numpy arrays and lists of :class:`ase.Atoms`):

- :mod:`quests_core.analysis.clusters`: solid-like clusters of a frame and a trajectory
- :mod:`quests_core.analysis.cnt`: classical nucleation theory (units, critical band, fit)
- :mod:`quests_core.analysis.compression`: dataset compression (MSC, FPS, k-means, random)
- :mod:`quests_core.analysis.active_learning`: novelty per generation
- :mod:`quests_core.analysis.uncertainty`: dH versus model error
- :mod:`quests_core.analysis.thermo`: entropy difference between phases
- :mod:`quests_core.analysis.nucleation_study`: the nucleation study of a trajectory
  (dH against a solid, clusters, pooled frames, critical band, CNT fit; the one entry
  both front ends call)

One entry point per analysis, called by the CLI and the dashboard alike:
:func:`~quests_core.analysis.nucleation_study.nucleation_study`,
:func:`~quests_core.analysis.compression.compression_study`,
:func:`~quests_core.analysis.active_learning.generation_study`,
:func:`~quests_core.analysis.uncertainty.uncertainty_study`,
:func:`~quests_core.analysis.thermo.phase_entropy_difference`. Each takes the
kernel keywords (``precision``, ``backend``, ``n_threads``) of
:meth:`quests_core.settings.Settings.kernel_kwargs` and passes them to every
engine call.

This module only holds small checks shared by the submodules (built on
:func:`quests_core._validate.check_descriptors`); import the submodules
themselves for the analyses.
"""

from __future__ import annotations

import numpy as np

from quests_core._validate import check_descriptors
from quests_core.errors import QuestsError

__all__ = ["check_same_descriptor", "check_same_settings"]


def check_same_descriptor(
    test: np.ndarray,
    reference: np.ndarray,
    *,
    test_name: str = "test",
    reference_name: str = "reference",
) -> None:
    """Raise when two descriptor arrays cannot be compared (k/cutoff/species differ).

    Only the dimension is visible from arrays; callers that know ``k`` and
    ``cutoff`` of both sides should also call :func:`check_same_settings`.
    """
    t = check_descriptors(test, test_name)
    r = check_descriptors(reference, reference_name)
    if t.shape[1] != r.shape[1]:
        raise QuestsError(
            f"{test_name} descriptors have dimension {t.shape[1]} but {reference_name} "
            f"has {r.shape[1]}: k or species differ"
        )


def check_same_settings(
    test: dict,
    reference: dict,
    *,
    test_name: str = "test",
    reference_name: str = "reference",
) -> None:
    """Raise when descriptor settings (``k``, ``cutoff``) of two sides differ.

    Parameters
    ----------
    test, reference : dict
        Mappings with keys ``"k"`` and ``"cutoff"`` (missing keys are skipped).
    """
    for key in ("k", "cutoff"):
        if key in test and key in reference:
            a, b = test[key], reference[key]
            same = np.isclose(float(a), float(b)) if key == "cutoff" else int(a) == int(b)
            if not same:
                raise QuestsError(
                    f"{key} differs between {test_name} ({a}) and {reference_name} ({b}); "
                    "descriptors are not comparable"
                )
