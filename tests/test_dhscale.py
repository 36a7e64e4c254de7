"""The dH scale of the dashboard's plots (dashboard.dhscale): transform, ticks, the
central-90% rule on the bundled failed run, and the browser's tick code against Python's."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dashboard import dhscale

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "sample_data" / "cu_failed_simulation_store"


def test_forward_inverse_and_sign():
    v = np.array([-1e5, -6.0, -0.5, 0.0, 0.5, 6.0, 1.6e5])
    t = dhscale.forward(v)
    np.testing.assert_allclose(t, np.arcsinh(v))
    np.testing.assert_allclose(dhscale.inverse(t), v, rtol=1e-12)
    assert np.all(np.sign(t) == np.sign(v))
    # linear within +-1 nat (slope 1 at 0), logarithmic beyond: 1e5 -> log(2e5)
    assert dhscale.forward(1e-3) == pytest.approx(1e-3, rel=1e-6)
    assert dhscale.forward(1e5) == pytest.approx(np.log(2e5), rel=1e-9)
    np.testing.assert_array_equal(dhscale.forward(v, "linear"), v)
    assert np.isnan(dhscale.forward(np.array([np.nan]))[0])
    assert dhscale.forward(np.array([1.0], dtype=np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="unknown dH scale 'log'"):
        dhscale.forward(v, "log")


def test_labels_and_ranges():
    assert dhscale.axis_label("dH (nats)", "asinh") == "dH (nats, asinh)"
    assert dhscale.axis_label("dH (nats)", "linear") == "dH (nats)"
    assert dhscale.is_dh("mean_dH") and not dhscale.is_dh("time")
    lo, hi = dhscale.data_range(np.array([-6.0, 1e5]), "asinh", pad=0.0)
    assert (lo, hi) == pytest.approx((np.arcsinh(-6.0), np.arcsinh(1e5)))
    assert dhscale.data_range(np.array([-3.0, -1.0]), "linear", pad=0.0) == (-3.0, 0.0)
    assert dhscale.data_range(np.array([np.nan])) == (-1.0, 1.0)


@pytest.mark.parametrize("span", [(-2.7, 12.7), (-2.0, 0.5), (0.1, 0.2), (-12.0, -3.0),
                                  (-0.001, 0.001), (5.0, 12.0)])
def test_nice_ticks_inside_readable_and_spaced(span):
    start, end = span
    ticks = dhscale.nice_ticks(start, end)
    lo, hi = dhscale.inverse([start, end])
    assert len(ticks) >= 3 and ticks == sorted(ticks)
    assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in ticks)
    t = dhscale.forward(np.array(ticks))
    # decade ticks never crowd (at least 1/8 of the axis apart); in a deep zoom the
    # fallback is evenly spaced dH steps
    steps = np.diff(ticks)
    assert np.all(np.diff(t) >= (end - start) / 8 * 0.999) or np.allclose(steps, steps[0])
    labels = [dhscale.format_tick(x) for x in ticks]
    assert all(len(label) <= 7 for label in labels), labels


def test_nice_ticks_of_the_failed_run_range():
    ticks = dhscale.nice_ticks(np.arcsinh(-7.2), np.arcsinh(1.66e5))
    assert 0.0 in ticks and 1e5 in ticks and 1e3 in ticks
    assert [dhscale.format_tick(x) for x in ticks] == ["-5", "0", "10", "100", "1000", "1e4",
                                                       "1e5"]
    assert dhscale.nice_ticks(-7.0, 1.0, "linear") == [-6.0, -4.0, -2.0, 0.0]


@pytest.mark.skipif(not (STORE / "manifest.json").exists(), reason="bundled chunk store")
def test_central_ninety_percent_fill_a_fifth_of_the_axis_on_the_failed_run():
    """The issue's rule on real data: the failed run's dH (against the 400 K solid)."""
    import pandas as pd

    dh = pd.read_parquet(STORE / "atoms", columns=["dH"])["dH"].to_numpy(np.float64)
    assert dh.max() > 1e5 and np.mean(dh < 0) > 0.8  # the run that exploded
    asinh = dhscale.central_fraction(dh, dhscale.data_range(dh, "asinh"), "asinh")
    linear = dhscale.central_fraction(dh, dhscale.data_range(dh, "linear"), "linear")
    assert asinh >= 0.2
    assert linear < 0.02  # the linear axis is what crushed the bulk


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the browser's tick code")
@pytest.mark.parametrize("mode", ["asinh", "linear"])
def test_browser_ticks_equal_python_ticks(mode):
    """The CustomJSTicker/formatter code (run by node) places and labels the same ticks."""
    spans = [(-2.7, 12.7), (-2.0, 0.5), (0.1, 0.2), (-12.0, -3.0), (5.0, 12.0), (-7.0, 1.0)]
    ticker, formatter = dhscale.bokeh_ticking(mode)
    script = (
        "const tick_fn = new Function('cb_data', " + json.dumps(ticker.major_code) + ");\n"
        "const fmt_fn = new Function('tick', " + json.dumps(formatter.code) + ");\n"
        f"const spans = {json.dumps(spans)};\n"
        "const out = spans.map(([s, e]) => { const t = tick_fn({start: s, end: e});"
        " return [t, t.map((x) => fmt_fn(x))]; });\n"
        "console.log(JSON.stringify(out));\n"
    )
    result = json.loads(subprocess.run(["node", "-e", script], capture_output=True, text=True,
                                       check=True, timeout=60).stdout)
    for (start, end), (positions, labels) in zip(spans, result, strict=True):
        ticks = dhscale.nice_ticks(start, end, mode)
        np.testing.assert_allclose(positions, dhscale.forward(np.array(ticks), mode),
                                   rtol=1e-9, atol=1e-12)
        assert labels == [dhscale.format_tick(t) for t in ticks]
