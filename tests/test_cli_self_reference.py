"""``trajectory`` without ``--reference``: frame 0 is the reference only while it is cheap.

dH of every atom against frame 0 costs n_0 kernel pairs per atom, n_0 x N in all; above
``$QUESTS_SELF_REFERENCE_MAX_PAIRS`` (1e10 by default, about a minute on 2 cores) the
command refuses in one line naming ``--reference`` instead of a run that does not
finish (4 frames of 256,000 atoms: 2.6e11 pairs, not done in 120 s). The size up to
which a frame's H is exact (``--exact-max-atoms``) is another matter and plays no part.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from quests_core.cli import main
from quests_core.errors import QuestsError
from quests_core.trajectory import (
    SELF_REFERENCE_MAX_PAIRS,
    SELF_REFERENCE_PAIRS_ENV,
    self_reference_max_pairs,
    self_reference_problem,
)

RUN = Path(__file__).resolve().parents[1] / "sample_data" / "cu_failed_simulation.extxyz"


def test_self_reference_problem_counts_the_pairs(monkeypatch):
    monkeypatch.delenv(SELF_REFERENCE_PAIRS_ENV, raising=False)
    assert self_reference_max_pairs() == SELF_REFERENCE_MAX_PAIRS == 1e10
    # 100 frames of 864 atoms: 7.5e7 pairs, fine; the 4 x 256,000 atoms: refused
    assert self_reference_problem("run.xyz", 864, 86_400) == ""
    text = self_reference_problem("run.xyz", 256_000, 1_024_000)
    assert text == ("run.xyz: frame 0 has 256,000 atoms: as the reference of all 1,024,000 "
                    "atoms it would take 2.6e+11 kernel pairs; give a reference (-r REF, e.g. "
                    "the training set), or -r run.xyz --reference-index 0 to take frame 0 "
                    "anyway")
    monkeypatch.setenv(SELF_REFERENCE_PAIRS_ENV, "nope")
    with pytest.raises(QuestsError, match="must be a positive number"):
        self_reference_max_pairs()


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_trajectory_refuses_an_expensive_first_frame_as_reference(tmp_path, fresh_cache, capsys,
                                                                   monkeypatch):
    base = ["trajectory", RUN, "--index", ":3", "-k", "8", "--cutoff", "4", "--no-progress"]
    # 864 x 2,592 = 2.2e6 pairs over a budget of 1e6: refused in one line, exit 1
    monkeypatch.setenv(SELF_REFERENCE_PAIRS_ENV, "1e6")
    rc, out, err = _run(base, capsys)
    assert rc == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {RUN}: frame 0 has 864 atoms: as the reference of all "
                           "2,592 atoms it would take 2.2e+06 kernel pairs")
    # frame 0 named as the reference on purpose: the same numbers as the default run
    table_a, table_b = tmp_path / "a.csv", tmp_path / "b.csv"
    rc, _, err = _run([*base, "-r", RUN, "--reference-index", "0", "-o", table_a], capsys)
    assert rc == 0, err
    monkeypatch.delenv(SELF_REFERENCE_PAIRS_ENV)
    rc, _, err = _run([*base, "-o", table_b], capsys)
    assert rc == 0, err
    a, b = pd.read_csv(table_a), pd.read_csv(table_b)
    pd.testing.assert_series_equal(a["mean_dH"], b["mean_dH"])
    pd.testing.assert_series_equal(a["frac_novel"], b["frac_novel"])
    assert a["frac_novel"].iat[0] == 0.0  # frame 0 against itself


def test_dashboard_refuses_an_expensive_first_frame_as_reference(monkeypatch, fresh_cache):
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec

    monkeypatch.setenv(SELF_REFERENCE_PAIRS_ENV, "1e6")
    spec = FileSpec(str(RUN), RUN.name, "trajectory", index=":3")
    settings = ComputeSettings(learning_max_n=50, learning_repeats=1, overlap_max_n=50,
                               k=8, cutoff=4.0).frozen()
    with pytest.raises(QuestsError) as info:
        run_pipeline([spec], settings)
    assert str(info.value) == (
        f"{RUN.name}: frame 0 has 864 atoms: as the reference of all 2,592 atoms it would "
        "take 2.2e+06 kernel pairs; give a file the role 'reference' (e.g. the training "
        "set, or a few frames of this run)")
    monkeypatch.delenv(SELF_REFERENCE_PAIRS_ENV)
    assert len(run_pipeline([spec], settings).frames) == 3
