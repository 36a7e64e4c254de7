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
    "n_threads": "threads", "threads": "threads",
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
