"""Entropy learning curves, their asymptote and the information gap (SPEC section 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import check_descriptors
from .entropy import DEFAULT_BANDWIDTH, entropy
from .errors import QuestsError
from .settings import DEFAULTS


@dataclass(frozen=True)
class LearningCurve:
    """Entropy of random subsets of ``sizes[i]`` environments, over ``repeats`` draws.

    ``entropies`` has shape ``(len(sizes), repeats)``; ``mean`` and ``std`` are
    over repeats (nats); ``log_n`` is the upper bound ``log sizes``.
    """

    sizes: np.ndarray
    entropies: np.ndarray
    h: float

    @property
    def log_n(self) -> np.ndarray:
        return np.log(self.sizes)

    @property
    def mean(self) -> np.ndarray:
        return self.entropies.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        return self.entropies.std(axis=1)


@dataclass(frozen=True)
class AsymptoteFit:
    """``f(N) = a - b exp(-c (log N)^2)`` fitted to a learning curve.

    ``gap`` is the information gap ``a - H(N)`` at every size of the curve and
    ``used`` marks the points that entered the fit.
    """

    a: float
    b: float
    c: float
    sizes: np.ndarray
    gap: np.ndarray
    used: np.ndarray
    a_err: float = float("nan")

    def __call__(self, n) -> np.ndarray:
        return asymptote_model(np.asarray(n, dtype=float), self.a, self.b, self.c)


def asymptote_model(n, a, b, c):
    return a - b * np.exp(-c * np.log(n) ** 2)


def asymptote_within_bound(a: float, n_total: int) -> bool:
    """True when a fitted asymptote ``a`` is finite and at most ``log(n_total)``.

    The entropy of ``n_total`` environments is at most ``log(n_total)`` (SPEC
    section 1), so a learning curve of a set of ``n_total`` environments cannot rise
    above it: a fit beyond that bound extrapolates a nearly flat curve and is no
    estimate of the set's entropy (seen: a = 15.3 nats for 2,160 environments of a
    solid whose H is 0.95 nats, log n = 7.68).
    """
    return bool(np.isfinite(a) and a <= np.log(max(int(n_total), 1)) + 1e-9)


def default_sizes(n: int, points: int = 15, smallest: int = 10) -> np.ndarray:
    """Log-spaced subset sizes from ``smallest`` up to ``n`` (unique integers)."""
    if n < 2:
        raise QuestsError(f"a learning curve needs at least 2 environments, got {n}")
    lo = min(smallest, max(1, n // 2))
    return np.unique(np.geomspace(lo, n, points).astype(int))


def learning_sizes(n: int, max_n: int, n_points: int = 12, smallest: int = 10) -> np.ndarray:
    """Log-spaced subset sizes from ``smallest`` to ``min(n, max_n)`` (unique integers).

    The sizes of a learning curve capped at ``max_n`` environments (the dashboard's
    learning curves); empty when ``min(n, max_n) < smallest``.
    """
    top = int(min(n, max_n))
    if top < smallest:
        return np.zeros(0, dtype=np.int64)
    sizes = np.unique(np.geomspace(smallest, top, n_points).round().astype(np.int64))
    return sizes[sizes <= top]


def learning_curve(
    x,
    sizes=None,
    h: float = DEFAULT_BANDWIDTH,
    repeats: int = 5,
    seed: int = DEFAULTS.seed,
    progress=None,
    cancel=None,
    **kw,
) -> LearningCurve:
    """H of random subsets (drawn without replacement) of every size, ``repeats`` times.

    Deterministic for a given ``seed``. ``progress(done, total)`` is called after
    each subset; ``cancel`` (``is_set()``) stops between subsets.
    """
    x = check_descriptors(x)
    n = x.shape[0]
    sizes = default_sizes(n) if sizes is None else np.asarray(sizes, dtype=int)
    if sizes.ndim != 1 or sizes.size == 0:
        raise QuestsError("sizes must be a non-empty 1-D list of subset sizes")
    if np.any(sizes < 1) or np.any(sizes > n):
        raise QuestsError(f"subset sizes must lie in [1, {n}], got {sizes.tolist()}")
    if int(repeats) < 1:
        raise QuestsError(f"repeats must be >= 1, got {repeats}")
    if np.ndim(h) != 0:
        raise QuestsError("learning_curve takes a single bandwidth")
    rng = np.random.default_rng(seed)
    out = np.empty((len(sizes), int(repeats)))
    total = out.size
    for i, size in enumerate(sizes):
        for r in range(int(repeats)):
            idx = rng.choice(n, size=int(size), replace=False)
            out[i, r] = entropy(x[np.sort(idx)], h, cancel=cancel, **kw)
            if progress is not None:
                progress(i * int(repeats) + r + 1, total)
    return LearningCurve(sizes=sizes, entropies=out, h=float(h))


def fit_asymptote(sizes, entropies, drop: int = 3) -> AsymptoteFit:
    """Fit ``a - b exp(-c (log N)^2)`` (a, b, c >= 0) by non-linear least squares.

    As in SPEC section 2 the first and last ``drop`` points are left out of the
    fit (fewer when the curve is too short to keep three points). ``entropies``
    may be a :class:`LearningCurve` mean or any 1-D array aligned with ``sizes``.
    """
    sizes = np.asarray(sizes, dtype=float)
    ent = np.asarray(entropies, dtype=float)
    if ent.ndim == 2:
        ent = ent.mean(axis=1)
    if sizes.shape != ent.shape or sizes.ndim != 1:
        raise QuestsError(f"sizes {sizes.shape} and entropies {ent.shape} must be aligned 1-D")
    if len(sizes) < 3:
        raise QuestsError(f"fitting the asymptote needs at least 3 points, got {len(sizes)}")
    if np.any(sizes < 1) or not np.all(np.isfinite(ent)):
        raise QuestsError("sizes must be >= 1 and entropies finite")
    k = max(0, min(int(drop), (len(sizes) - 3) // 2))
    used = np.zeros(len(sizes), dtype=bool)
    used[k : len(sizes) - k] = True
    from scipy.optimize import curve_fit  # imported here: keeps `import quests_core` quick

    xs, ys = sizes[used], ent[used]
    a0 = float(ys.max())
    b0 = max(a0 - float(ys.min()), 1e-6)
    l2 = np.log(xs) ** 2
    c0 = 1.0 / max(float(np.median(l2)), 1e-6)
    try:
        popt, pcov = curve_fit(
            asymptote_model,
            xs,
            ys,
            p0=[a0, b0, c0],
            bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, np.inf]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError) as exc:
        raise QuestsError(f"asymptote fit did not converge: {exc}") from None
    a, b, c = (float(v) for v in popt)
    a_err = float(math.sqrt(pcov[0, 0])) if np.all(np.isfinite(pcov)) else float("nan")
    return AsymptoteFit(
        a=a, b=b, c=c, sizes=sizes, gap=a - ent, used=used, a_err=a_err
    )
