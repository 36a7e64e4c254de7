"""Every front end takes the defaults that quests_core.settings.Settings defines from it.

Three checks that can each fail: the CLI's options of every subcommand, the
dashboard's ComputeSettings, and a scan of the source for a literal default of
one of those quantities anywhere but in ``quests_core/settings.py``.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from quests_core.settings import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
#: parameter / option names -> the Settings field whose default they carry
FIELDS = {
    "k": "k", "cutoff": "cutoff", "h": "bandwidth", "bandwidth": "bandwidth",
    "precision": "precision", "backend": "backend", "chunk_atoms": "chunk_atoms",
    "n_threads": "threads", "threads": "threads", "seed": "seed",
}
CONSTANT_NAMES = {"DEFAULT_K", "DEFAULT_CUTOFF", "DEFAULT_BANDWIDTH", "DEFAULT_PRECISION",
                  "DEFAULT_BACKEND", "DEFAULT_CHUNK_ATOMS", "CHUNK_ATOMS"}


def _subparsers(parser: argparse.ArgumentParser):
    yield "quests-dashboard", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_cli_subcommand_takes_the_settings_defaults():
    from quests_core.cli import build_parser

    checked = 0
    for name, sub in _subparsers(build_parser()):
        for action in sub._actions:
            field = FIELDS.get(action.dest)
            if field is None or action.default is argparse.SUPPRESS:
                continue
            if name == "phase-entropy" and action.dest == "bandwidth":
                # the paper's convention: phases compared at the volume rule's one h
                assert action.default == "auto"
                continue
            expected = getattr(DEFAULTS, field)
            assert action.default == expected, (
                f"{name} {'/'.join(action.option_strings)}: default {action.default!r}, "
                f"Settings says {expected!r}")
            checked += 1
    assert checked >= 30  # k, cutoff, bandwidth, precision, threads, ... of every subcommand


def test_dashboard_compute_settings_take_the_settings_defaults():
    from dashboard.state import ComputeSettings

    s = ComputeSettings()
    for name in ("k", "cutoff", "bandwidth"):
        assert getattr(s, name) == getattr(DEFAULTS, name), name


def _literal_defaults(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            with_default = positional[len(positional) - len(args.defaults):]
            pairs = list(zip(with_default, args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                      if d is not None]
            for arg, default in pairs:
                if (arg.arg in FIELDS and isinstance(default, ast.Constant)
                        and default.value is not None and not isinstance(default.value, bool)):
                    yield node.lineno, f"parameter {arg.arg}={default.value!r}"
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in CONSTANT_NAMES:
                    yield node.lineno, f"{target.id} = {node.value.value!r}"
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                # param.Number(default=5.0) of a Parameterized attribute named like a field
                if (kw.arg == "default" and isinstance(kw.value, ast.Constant)
                        and kw.value.value is not None):
                    parent = getattr(node, "_target", None)
                    if parent in FIELDS and parent not in ("h",):
                        yield node.lineno, f"{parent} = ...(default={kw.value.value!r})"


def _annotate_targets(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    node.value._target = target.id


SOURCES = sorted(p for folder in ("quests_core", "dashboard") for p in (ROOT / folder).rglob("*.py")
                 if p.name != "settings.py" or p.parent.name != "quests_core")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_writes_a_settings_default_again(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    _annotate_targets(tree)
    found = [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in _literal_defaults(tree)]
    assert not found, "defaults written again instead of taken from settings.DEFAULTS:\n" + \
        "\n".join(found)


def test_dashboard_bounds_are_the_settings_domains():
    """The sidebar's k, cutoff and h take their bounds from quests_core.settings.DOMAINS:
    hard bounds where the engine's validators refuse, soft bounds where the widgets
    start; just outside a hard bound, the engine refuses as the widget does."""
    from dashboard.state import ComputeSettings
    from quests_core._validate import check_bandwidth, check_k_cutoff
    from quests_core.errors import QuestsError
    from quests_core.settings import DOMAINS

    for name, domain in DOMAINS.items():
        declared = ComputeSettings.param[name]
        assert (declared.bounds, declared.softbounds) == (domain.bounds, domain.typical), name
        lo, hi = domain.typical
        assert domain.bounds[0] <= lo < getattr(DEFAULTS, name) < hi <= domain.bounds[1]
    (k_lo, k_hi), (c_lo, c_hi) = DOMAINS["k"].bounds, DOMAINS["cutoff"].bounds
    assert check_k_cutoff(k_hi, c_hi) == (k_hi, c_hi)
    for k, cutoff in ((k_hi + 1, 5.0), (k_lo - 1, 5.0), (32, c_hi * 1.01), (32, c_lo / 2)):
        with pytest.raises(QuestsError):
            check_k_cutoff(k, cutoff)
    h_lo, h_hi = DOMAINS["bandwidth"].bounds
    check_bandwidth(h_lo)
    for h in (h_lo / 2, h_hi * 2):
        with pytest.raises(QuestsError):
            check_bandwidth(h)
    with pytest.raises(ValueError):  # the widget's parameter refuses the same values
        ComputeSettings(cutoff=c_hi * 1.01)


def test_one_upload_cap():
    """The upload cap is written once (dashboard.paths.MAX_UPLOAD_MB): the session, the
    app and both launchers take it from there."""
    import inspect

    from dashboard.app import DashboardApp, parse_args
    from dashboard.launch import build_parser
    from dashboard.paths import MAX_UPLOAD_MB
    from dashboard.state import AppState

    assert AppState.param.max_upload_mb.default == MAX_UPLOAD_MB
    assert inspect.signature(DashboardApp).parameters["max_upload_mb"].default == MAX_UPLOAD_MB
    assert parse_args([]).max_upload_mb == MAX_UPLOAD_MB  # panel serve app.py --args
    assert build_parser().parse_args([]).max_upload_mb == MAX_UPLOAD_MB  # launch.py
