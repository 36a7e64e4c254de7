"""Active learning: how much each generation of data adds.

For generation g (in increasing order), novelty is the fraction of its
environments with dH > 0 against all environments of earlier generations; the
cumulative dataset (generations <= g) is summarised by its entropy H and
diversity D. :func:`generation_study` is the analysis of a dataset given per
structure (the dashboard's Active-learning tab).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

import quests_core as qc
from quests_core.errors import QuestsError
from quests_core.settings import DEFAULTS


def generation_labels(structures: Sequence, key: str = "generation") -> np.ndarray:
    """Integer generation of every structure from ``atoms.info[key]``.

    Raises
    ------
    QuestsError
        When a structure lacks the key or its value is not an integer.
    """
    if len(structures) == 0:
        raise QuestsError("no structures (empty selection)")
    out = np.empty(len(structures), dtype=np.int64)
    for i, atoms in enumerate(structures):
        if key not in atoms.info:
            raise QuestsError(f"info key {key!r} missing", index=i)
        value = atoms.info[key]
        try:
            as_float = float(value)
        except (TypeError, ValueError) as exc:
            raise QuestsError(f"generation {value!r} is not an integer", index=i) from exc
        if not as_float.is_integer():
            raise QuestsError(f"generation {value!r} is not an integer", index=i)
        out[i] = int(as_float)
    return out


def active_learning_report(
    x: np.ndarray,
    generation: np.ndarray,
    *,
    h: float = DEFAULTS.bandwidth,
    n_threads: int | None = None,
    **kernel_kw,
) -> pd.DataFrame:
    """Novelty of each generation and information of the cumulative dataset.

    Parameters
    ----------
    x : (n, d) array
        Descriptors of all environments.
    generation : (n,) int array
        Generation of each environment.
    h : float
        Kernel bandwidth.
    n_threads, **kernel_kw
        Keywords of every kernel call (``precision``, ``backend``).

    Returns
    -------
    DataFrame
        One row per generation, ascending, with columns ``generation``,
        ``n_envs``, ``n_envs_cumulative``, ``novelty`` (fraction of the
        generation's environments with dH > 0 against all earlier ones; NaN
        for the first generation), ``mean_dH`` (mean of that dH, NaN for the
        first), ``entropy`` and ``diversity`` of the cumulative dataset.
    """
    xs = np.asarray(x)
    gen = np.asarray(generation).ravel()
    if xs.ndim != 2:
        raise QuestsError(f"descriptors must be a 2-D array, got shape {xs.shape}")
    if len(xs) == 0:
        raise QuestsError("no environments (empty selection)")
    if gen.shape != (len(xs),):
        raise QuestsError(f"{gen.size} generation labels for {len(xs)} environments")
    from scipy.special import logsumexp

    kw = {"n_threads": n_threads, **kernel_kw}
    rows = []
    for g in np.unique(gen):
        current = xs[gen == g]
        earlier = xs[gen < g]
        upto = xs[gen <= g]
        if len(earlier):
            dh = np.asarray(qc.delta_entropy(current, earlier, h, **kw))
            novelty, mean_dh = float(np.mean(dh > 0)), float(np.mean(dh))
        else:
            novelty, mean_dh = float("nan"), float("nan")
        ent, dh_self = qc.entropy_and_delta(upto, h, **kw)
        rows.append(
            {
                "generation": int(g),
                "n_envs": int(len(current)),
                "n_envs_cumulative": int(len(upto)),
                "novelty": novelty,
                "mean_dH": mean_dh,
                "entropy": float(ent),
                "diversity": float(logsumexp(np.asarray(dh_self, dtype=float))),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class GenerationStudy:
    """Result of :func:`generation_study`.

    Attributes
    ----------
    report : DataFrame
        :func:`active_learning_report` of the environments kept.
    n_structures : int
        Structures of the dataset.
    env_step : int
        Every ``env_step``-th environment of each structure was kept.
    """

    report: pd.DataFrame
    n_structures: int
    env_step: int


def generation_study(
    descs: Sequence[np.ndarray],
    generations: Sequence[int],
    *,
    h: float = DEFAULTS.bandwidth,
    env_step: int = 1,
    n_threads: int | None = None,
    **kernel_kw,
) -> GenerationStudy:
    """:func:`active_learning_report` of a dataset given per structure.

    Parameters
    ----------
    descs : list of (n_atoms_i, d) arrays
        Descriptors of each structure.
    generations : (n_structures,) int array
        Generation of each structure (:func:`generation_labels`).
    h : float
        Kernel bandwidth.
    env_step : int
        Keep every ``env_step``-th environment of each structure (faster).
    n_threads, **kernel_kw
        Keywords of every kernel call (``precision``, ``backend``).

    Raises
    ------
    QuestsError
        When the generations do not match the structures, or for a step below 1.
    """
    from quests_core.analysis.compression import every_nth

    gen = np.asarray(generations).ravel()
    if gen.shape != (len(descs),):
        raise QuestsError(f"{gen.size} generations for {len(descs)} structures")
    kept = every_nth(descs, env_step)
    labels = np.repeat(gen, [len(x) for x in kept])
    report = active_learning_report(np.concatenate(kept), labels, h=h, n_threads=n_threads,
                                    **kernel_kw)
    return GenerationStudy(report=report, n_structures=len(descs), env_step=int(env_step))
