"""How dH is put on an axis or a colour bar: the asinh scale (default) or linear.

dH spans orders of magnitude in the runs people inspect: the known atoms of a
failed simulation sit between -7 and 0 nats while its exploded atoms reach
1e5 nats. On a linear axis the bulk collapses into a few pixels. The asinh
scale ``t = asinh(dH / s)`` (``s`` = :data:`ASINH_SCALE` nats) is linear for
``|dH| < s``, keeps the sign (so known and novel stay on either side of 0) and
is logarithmic beyond, so the bulk and every outlier are on screen at once.

Plots draw the transformed value ``t``; the axis ticks and labels are in
nats: :func:`bokeh_ticking` returns a Bokeh ticker and formatter that place
"nice" dH values (0, ±1, ±2, ±5, ±10, ...) for whatever range is visible, so
a zoom keeps readable ticks. The same functions compute tick positions on
the server (:func:`nice_ticks`) for tests and static plots.

Everything here is a pure function of numbers; the views take the mode from
``AppState.dh_scale``.
"""

from __future__ import annotations

import math

import numpy as np

#: The ways to draw dH.
DH_SCALES: tuple[str, ...] = ("asinh", "linear")
#: dH (nats) below which the asinh scale is linear.
ASINH_SCALE = 1.0
#: Columns holding entropies in nats that the dH scale applies to.
DH_COLUMNS = frozenset({"dH", "dH_solid", "mean_dH", "max_dH"})


def is_dh(column: str) -> bool:
    """Whether a table column is a dH-like quantity (drawn on the dH scale)."""
    return column in DH_COLUMNS


def forward(values, mode: str = "asinh", scale: float = ASINH_SCALE) -> np.ndarray:
    """dH (nats) -> plotted coordinate. NaN and inf stay NaN/inf with their sign."""
    v = np.asarray(values)
    if mode == "linear":
        return v
    check_mode(mode)
    dtype = v.dtype if np.issubdtype(v.dtype, np.floating) else np.float64
    return np.arcsinh(v.astype(dtype, copy=False) / dtype.type(scale))


def inverse(values, mode: str = "asinh", scale: float = ASINH_SCALE) -> np.ndarray:
    """Plotted coordinate -> dH (nats)."""
    v = np.asarray(values, dtype=np.float64)
    if mode == "linear":
        return v
    check_mode(mode)
    return np.sinh(v) * scale


def check_mode(mode: str) -> None:
    if mode not in DH_SCALES:
        raise ValueError(f"unknown dH scale {mode!r}; use one of {', '.join(DH_SCALES)}")


def axis_label(base: str, mode: str) -> str:
    """Axis label for a dH quantity, saying which scale it is drawn on:
    "dH (nats)" becomes "dH (nats, asinh)"."""
    if mode == "linear":
        return base
    if base.endswith(")"):
        return f"{base[:-1]}, asinh)"
    return f"{base} (asinh)"


def data_range(values, mode: str = "asinh", pad: float = 0.03) -> tuple[float, float]:
    """Range of the plotted coordinate holding every finite value and 0, padded by ``pad``
    of its width on each side (``(-1, 1)`` without finite values)."""
    t = forward(values, mode)
    t = t[np.isfinite(t)]
    if len(t) == 0:
        return (-1.0, 1.0)
    lo, hi = min(float(t.min()), 0.0), max(float(t.max()), 0.0)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    width = hi - lo
    return (lo - pad * width, hi + pad * width)


def central_fraction(values, axis: tuple[float, float], mode: str = "asinh",
                     central: float = 0.9) -> float:
    """Fraction of the axis ``axis`` (plotted coordinates) spanned by the central
    ``central`` of the finite values (e.g. the 5th to 95th percentile)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0 or axis[1] <= axis[0]:
        return float("nan")
    q = (1.0 - central) / 2.0
    lo, hi = forward(np.quantile(v, [q, 1.0 - q]), mode)
    return float((hi - lo) / (axis[1] - axis[0]))


def _nice_linear(lo: float, hi: float, target: int) -> list[float]:
    span = hi - lo
    if not span > 0:
        return [lo]
    raw = span / max(target, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step)
    return [round(i * step, 12) for i in range(first, math.floor(hi / step) + 1)]


def nice_ticks(start: float, end: float, mode: str = "asinh", target: int = 7) -> list[float]:
    """Tick values in nats for a visible range ``[start, end]`` of plotted coordinates.

    Linear: the usual 1-2-5 steps. asinh: 0 and ±(1, 2, 5) x 10^k, thinned so that
    neighbours are at least ``(end - start) / (target + 1)`` apart on screen; when
    fewer than three survive (a deep zoom), linear steps within the visible dH range.
    Mirrors the JavaScript of :func:`bokeh_ticking`.
    """
    lo, hi = (float(x) for x in inverse([start, end], mode))
    if mode == "linear":
        return _nice_linear(lo, hi, target)
    candidates = [0.0]
    top = max(abs(lo), abs(hi), 1e-12)
    for k in range(-3, int(math.ceil(math.log10(top))) + 1):
        for m in (1.0, 2.0, 5.0):
            value = m * 10.0 ** k
            candidates += [value, -value]
    candidates = sorted(c for c in candidates if lo <= c <= hi)
    min_gap = (end - start) / (target + 1)
    picked: list[float] = []
    # keep the ticks of largest magnitude first (decades before 2s and 5s), then fill
    order = sorted(candidates, key=lambda c: (_rank(c), -abs(c)))
    for c in order:
        t = float(forward(c, mode))
        if all(abs(t - float(forward(p, mode))) >= min_gap for p in picked):
            picked.append(c)
    if len(picked) < 3:
        return _nice_linear(lo, hi, target)
    return sorted(picked)


def _rank(value: float) -> int:
    """0 for 0, 1 for powers of ten, 2 for 5s, 3 for 2s (tick priority)."""
    if value == 0:
        return 0
    mantissa = round(abs(value) / 10.0 ** math.floor(math.log10(abs(value))), 6)
    return {1.0: 1, 5.0: 2}.get(mantissa, 3)


def format_tick(value: float) -> str:
    """A dH tick label: 0, -2, 0.5, 1000, 1e4, -2e5."""
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e4 or a < 1e-3:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:.6g}"


# The browser side of nice_ticks/format_tick (same rules, so zooming keeps dH ticks).
_JS_TICKS = """
const mode = MODE, s = SCALE, target = TARGET;
const inv = (t) => mode === 'linear' ? t : s * Math.sinh(t);
const fwd = (v) => mode === 'linear' ? v : Math.asinh(v / s);
function linear(lo, hi) {
  const span = hi - lo; if (!(span > 0)) return [lo];
  const raw = span / target, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = mag * 10;
  for (const m of [1, 2, 2.5, 5, 10]) { if (m * mag >= raw) { step = m * mag; break; } }
  const out = [];
  for (let i = Math.ceil(lo / step); i <= Math.floor(hi / step); i++)
    out.push(fwd(Number((i * step).toPrecision(12))));
  return out;
}
const start = cb_data.start, end = cb_data.end;
const lo = inv(Math.min(start, end)), hi = inv(Math.max(start, end));
if (mode === 'linear') return linear(lo, hi);
const top = Math.max(Math.abs(lo), Math.abs(hi), 1e-12);
let cand = [0];
for (let k = -3; k <= Math.ceil(Math.log10(top)); k++)
  for (const m of [1, 5, 2]) { const v = m * Math.pow(10, k); cand.push(v, -v); }
cand = cand.filter((c) => c >= lo && c <= hi);
const rank = (c) => {
  if (c === 0) return 0;
  const a = Math.abs(c), mant = Math.round(a / Math.pow(10, Math.floor(Math.log10(a))) * 1e6) / 1e6;
  return mant === 1 ? 1 : (mant === 5 ? 2 : 3);
};
cand.sort((a, b) => (rank(a) - rank(b)) || (Math.abs(b) - Math.abs(a)));
const gap = Math.abs(end - start) / (target + 1), picked = [];
for (const c of cand) {
  const t = fwd(c);
  if (picked.every((p) => Math.abs(t - p) >= gap)) picked.push(t);
}
if (picked.length < 3) return linear(lo, hi);
return picked.sort((a, b) => a - b);
"""

_JS_FORMAT = """
const mode = MODE, s = SCALE;
let v = mode === 'linear' ? tick : s * Math.sinh(tick);
v = Number(v.toPrecision(6));
if (v === 0 || Math.abs(v) < 1e-9) return '0';
const a = Math.abs(v);
if (a >= 1e4 || a < 1e-3) {
  const [m, e] = v.toExponential(0).split('e');
  return m + 'e' + parseInt(e);
}
return String(Number(v.toPrecision(6)));
"""


def _js(code: str, mode: str, target: int = 7) -> str:
    return (code.replace("MODE", repr(mode)).replace("SCALE", repr(float(ASINH_SCALE)))
            .replace("TARGET", str(int(target))))


def bokeh_ticking(mode: str = "asinh", target: int = 7):
    """``(ticker, formatter)`` Bokeh models labelling a plotted-coordinate axis in nats."""
    from bokeh.models import CustomJSTicker, CustomJSTickFormatter

    check_mode(mode)
    return (CustomJSTicker(major_code=_js(_JS_TICKS, mode, target)),
            CustomJSTickFormatter(code=_js(_JS_FORMAT, mode)))


def axis_hook(axis: str, mode: str = "asinh", target: int = 7):
    """A HoloViews plot hook giving the ``axis`` ("x" or "y") dH ticks on ``mode``'s scale."""

    def hook(plot, element) -> None:
        if mode == "linear":
            return
        ticker, formatter = bokeh_ticking(mode, target)
        for ax in getattr(plot.state, f"{axis}axis"):
            ax.ticker = ticker
            ax.formatter = formatter

    return hook


def colorbar_opts(mode: str = "asinh") -> dict:
    """``colorbar_opts`` for a colour bar of (transformed) dH."""
    if mode == "linear":
        return {}
    ticker, formatter = bokeh_ticking(mode, target=6)
    return {"ticker": ticker, "formatter": formatter}
