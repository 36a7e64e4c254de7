"""Uncertainty (dH) versus true error of a model.

Per-atom force errors ||F_pred - F_ref|| are compared with dH of the same
environments against the training set. dH is binned into ``n_bins`` uniform
bins of width l over its range, and the errors of the points within
``window * l`` of each bin centre are averaged (a running average; windows of
neighbouring bins overlap for window > 0.5). The share of high-error atoms
that dH > 0 flags measures how well the model-free uncertainty catches bad
predictions. :func:`uncertainty_study` is the whole analysis from descriptors
(the dashboard's Uncertainty tab).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from quests_core.errors import QuestsError

DEFAULT_BINS = 20
DEFAULT_WINDOW = 0.75
DEFAULT_ERROR_QUANTILE = 0.9


def force_errors(forces_pred: np.ndarray, forces_ref: np.ndarray) -> np.ndarray:
    """Per-atom force error ||F_pred - F_ref|| (same units as the forces).

    Parameters
    ----------
    forces_pred, forces_ref : (n, 3) arrays
    """
    a = np.asarray(forces_pred, dtype=float)
    b = np.asarray(forces_ref, dtype=float)
    if a.shape != b.shape:
        raise QuestsError(f"force arrays differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 2 or a.shape[1] != 3:
        raise QuestsError(f"forces must have shape (n, 3), got {a.shape}")
    return np.linalg.norm(a - b, axis=1)


def _paired(dh: np.ndarray, error: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(dh, dtype=float).ravel()
    e = np.asarray(error, dtype=float).ravel()
    if d.shape != e.shape:
        raise QuestsError(f"{d.size} dH values but {e.size} errors")
    if d.size == 0:
        raise QuestsError("no atoms to compare (empty selection)")
    ok = np.isfinite(d) & np.isfinite(e)
    if not ok.any():
        raise QuestsError("no atom has both a finite dH and a finite error")
    return d[ok], e[ok]


@dataclass(frozen=True)
class RunningAverage:
    """Binned running average of an error against dH.

    Attributes
    ----------
    centers : (n_bins,) array
        Bin centres in dH (nats).
    mean : (n_bins,) array
        Mean error of the points within ``window * width`` of each centre;
        NaN where no point falls in the window.
    std : (n_bins,) array
        Standard deviation of those errors (NaN where empty).
    count : (n_bins,) int64
        Number of points in each window.
    width : float
        Bin width l.
    window : float
        Half-width of the averaging window, in units of l.
    """

    centers: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    width: float
    window: float


def running_average(
    dh: np.ndarray,
    error: np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
    window: float = DEFAULT_WINDOW,
) -> RunningAverage:
    """Average of ``error`` in overlapping windows along ``dh``.

    The dH range [min, max] is cut into ``n_bins`` uniform bins of width
    l = (max - min) / n_bins; for each bin centre c the errors of the points
    with |dH - c| <= window * l are averaged.
    """
    if n_bins < 1:
        raise QuestsError(f"number of bins must be at least 1, got {n_bins}")
    if not window > 0:
        raise QuestsError(f"window must be positive, got {window}")
    d, e = _paired(dh, error)
    lo, hi = float(d.min()), float(d.max())
    if not hi > lo:
        raise QuestsError(f"all dH values are equal ({lo}); nothing to bin")
    width = (hi - lo) / n_bins
    centers = lo + width * (np.arange(n_bins) + 0.5)
    order = np.argsort(d, kind="stable")
    ds, es = d[order], e[order]
    csum = np.concatenate([[0.0], np.cumsum(es)])
    csq = np.concatenate([[0.0], np.cumsum(es * es)])
    half = window * width
    # a tiny relative slack so that points exactly on a window edge are kept
    slack = 1e-12 * max(abs(lo), abs(hi), width)
    start = np.searchsorted(ds, centers - half - slack, side="left")
    stop = np.searchsorted(ds, centers + half + slack, side="right")
    count = (stop - start).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = csum[stop] - csum[start]
        mean = np.where(count > 0, total / count, np.nan)
        var = np.where(count > 0, (csq[stop] - csq[start]) / count - mean**2, np.nan)
    std = np.sqrt(np.clip(var, 0.0, None))
    return RunningAverage(centers, mean, std, count, width, float(window))


@dataclass(frozen=True)
class ErrorRecall:
    """How many high-error atoms dH > 0 flags.

    Attributes
    ----------
    threshold : float
        Error above which an atom counts as high-error.
    n_high : int
        Number of high-error atoms.
    recall : float
        Share of high-error atoms with dH > 0 (NaN when there is none).
    precision : float
        Share of atoms with dH > 0 that are high-error (NaN when none is flagged).
    frac_flagged : float
        Share of all atoms with dH > 0.
    """

    threshold: float
    n_high: int
    recall: float
    precision: float
    frac_flagged: float


def high_error_recall(
    dh: np.ndarray,
    error: np.ndarray,
    *,
    threshold: float | None = None,
    quantile: float = DEFAULT_ERROR_QUANTILE,
    dh_threshold: float = 0.0,
) -> ErrorRecall:
    """Share of high-error atoms caught by dH > ``dh_threshold``.

    Parameters
    ----------
    threshold : float, optional
        Absolute error threshold; when omitted the ``quantile`` of the errors is
        used (atoms strictly above it are high-error).
    quantile : float
        Quantile in (0, 1) used when ``threshold`` is None.
    """
    d, e = _paired(dh, error)
    if threshold is None:
        if not 0.0 < quantile < 1.0:
            raise QuestsError(f"error quantile must be in (0, 1), got {quantile}")
        threshold = float(np.quantile(e, quantile))
    high = e > threshold
    flagged = d > dh_threshold
    n_high = int(high.sum())
    recall = float((flagged & high).sum() / n_high) if n_high else float("nan")
    n_flag = int(flagged.sum())
    precision = float((flagged & high).sum() / n_flag) if n_flag else float("nan")
    return ErrorRecall(float(threshold), n_high, recall, precision, float(flagged.mean()))


@dataclass(frozen=True)
class UQResult:
    """Per-atom dH and error with their running average and recall."""

    dh: np.ndarray
    error: np.ndarray
    running: RunningAverage
    recall: ErrorRecall


def uncertainty_vs_error(
    dh: np.ndarray,
    error: np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
    window: float = DEFAULT_WINDOW,
    threshold: float | None = None,
    quantile: float = DEFAULT_ERROR_QUANTILE,
) -> UQResult:
    """Running average of the error against dH and the recall of dH > 0."""
    d = np.asarray(dh, dtype=float).ravel()
    e = np.asarray(error, dtype=float).ravel()
    running = running_average(d, e, n_bins=n_bins, window=window)
    recall = high_error_recall(d, e, threshold=threshold, quantile=quantile)
    return UQResult(d, e, running, recall)


def force_arrays(arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Names of the per-atom force arrays among ``arrays``: ``forces*`` of shape (n, 3),
    sorted."""
    return sorted(k for k, v in arrays.items()
                  if k.startswith("forces") and np.ndim(v) == 2 and np.shape(v)[1] == 3)


def force_array_names(arrays: Mapping[str, np.ndarray], pred: str = "", ref: str = "",
                      source: str | None = None) -> tuple[str, str]:
    """The two per-atom force arrays compared: the named ones, or the file's only two.

    Parameters
    ----------
    arrays : mapping of str to arrays
        Per-atom arrays of a dataset.
    pred, ref : str
        Names of the predicted and reference forces; both empty to take the
        only two ``forces*`` arrays of shape (n, 3) (the second in sorted order is
        the prediction).
    source : str, optional
        Name of the data, for the error message.

    Raises
    ------
    QuestsError
        When a named array is missing, only one is named, or (automatic) there
        are not exactly two ``forces*`` arrays of shape (n, 3).
    """
    if bool(pred) != bool(ref):
        raise QuestsError("name both force arrays (predicted and reference) or neither")
    if pred:
        for name in (pred, ref):
            if name not in arrays:
                raise QuestsError(f"per-atom array {name!r} missing (have {sorted(arrays)})",
                                  source=source)
        return pred, ref
    keys = force_arrays(arrays)
    if len(keys) != 2:
        raise QuestsError(f"need two per-atom force arrays to compare, found {keys}; name "
                          "them in the view", source=source)
    return keys[1], keys[0]


def uncertainty_study(
    x_test: np.ndarray,
    x_ref: np.ndarray,
    error: np.ndarray,
    h: float,
    *,
    n_bins: int = DEFAULT_BINS,
    window: float = DEFAULT_WINDOW,
    threshold: float | None = None,
    quantile: float = DEFAULT_ERROR_QUANTILE,
    test_name: str = "test",
    reference_name: str = "reference",
    progress: Callable[[int, int], None] | None = None,
    **kernel_kw,
) -> UQResult:
    """dH of the test environments against the training set, against their error.

    Parameters
    ----------
    x_test : (n, d) array
        Descriptors of the test atoms.
    x_ref : (m, d) array
        Descriptors of the training set (same k and cutoff).
    error : (n,) array
        Error of each test atom (e.g. :func:`force_errors`).
    h : float
        Kernel bandwidth of dH.
    n_bins, window, threshold, quantile
        As in :func:`uncertainty_vs_error`.
    test_name, reference_name : str
        Names of the two sets, for error messages.
    progress : callable, optional
        ``progress(done_rows, total_rows)`` of the dH computation.
    **kernel_kw
        ``n_threads``, ``precision``, ``backend``, ``cancel``.

    Raises
    ------
    QuestsError
        When the descriptors differ in width or the errors do not match the atoms.
    """
    import quests_core as qc
    from quests_core.analysis import check_same_descriptor

    check_same_descriptor(x_test, x_ref, test_name=test_name, reference_name=reference_name)
    if len(np.ravel(error)) != len(x_test):
        raise QuestsError(f"{len(np.ravel(error))} errors for {len(x_test)} test atoms",
                          source=test_name)
    dh = np.asarray(qc.delta_entropy(x_test, x_ref, h, progress=progress, **kernel_kw),
                    dtype=np.float64)
    return uncertainty_vs_error(dh, error, n_bins=n_bins, window=window, threshold=threshold,
                                quantile=quantile)


def per_atom_array(structures, name: str, source: str | None = None) -> np.ndarray:
    """Per-atom array ``name`` of every structure, concatenated (``"forces"`` also from
    the calculator's results); a structure without it is one error naming its file and
    frame."""
    from quests_core.io import locate_error

    parts = []
    for i, atoms in enumerate(structures):
        if name in atoms.arrays:
            parts.append(np.asarray(atoms.arrays[name], dtype=float))
        elif name == "forces" and atoms.calc is not None and "forces" in atoms.calc.results:
            parts.append(np.asarray(atoms.calc.results["forces"], dtype=float))
        else:
            exc = QuestsError(f"per-atom array {name!r} missing", index=i)
            raise locate_error(exc, structures, source=source)
    return np.concatenate(parts)


def model_errors(structures, *, forces: tuple[str, str] | None = None,
                 key: str | None = None, source: str | None = None) -> np.ndarray:
    """Per-atom model error of the structures: the norm of the difference of two force
    arrays (``forces``: predicted, reference; :func:`force_errors`), or the per-atom
    array ``key`` (its norm when it has 3 columns), as ``uq --forces`` / ``--error-key``."""
    if key:
        error = per_atom_array(structures, key, source)
        if error.ndim == 2 and error.shape[1] == 3:
            return np.linalg.norm(error, axis=1)
        if error.ndim != 1:
            raise QuestsError(f"per-atom array {key!r} has shape {error.shape}; expected (n,) "
                              "or (n, 3)", source=source)
        return error
    if not forces:
        raise QuestsError("a model error needs two force arrays or an error key",
                          source=source)
    return force_errors(per_atom_array(structures, forces[0], source),
                        per_atom_array(structures, forces[1], source))

