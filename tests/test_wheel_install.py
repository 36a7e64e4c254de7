"""A wheel install serves the dashboard: ``pip install`` of the built wheel in a fresh
venv, then ``quests-dashboard serve`` from an empty folder opens on the demo data shipped
in the package (``dashboard/demo_data``), with its help naming ``quests-dashboard serve``.

The slow test builds the wheel from a copy of the source tree, installs it with
``--no-deps --no-index`` into a new venv that sees this environment's packages (the
dependencies), starts the server on 127.0.0.1 and reads the served page and document.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from conftest import stop_process_group

from dashboard import paths
from dashboard.launch import build_parser

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "dashboard" / "demo_data"
DEMO_FILES = ["cu_failed_simulation.extxyz", "cu_solid_400K.extxyz"]
#: What is left out of the copy the wheel is built from (large, generated or not packaged).
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "*.nbi", "*.nbc",
    ".pytest_cache", ".ruff_cache", "test-artifacts", "sample_data", ".quests_cache",
)


# ---------------------------------------------------------------------------------------
# fast checks of the pieces
# ---------------------------------------------------------------------------------------


def _frames(path: Path) -> list[bytes]:
    lines, out, i = path.read_bytes().splitlines(keepends=True), [], 0
    while i < len(lines):
        n = int(lines[i])
        out.append(b"".join(lines[i:i + n + 2]))
        i += n + 2
    return out


def test_demo_data_are_frames_of_the_sample_data_as_its_readme_says():
    readme = (DEMO / "README.md").read_text()
    assert sorted(p.name for p in DEMO.glob("*.extxyz")) == DEMO_FILES
    total = sum(p.stat().st_size for p in DEMO.iterdir())
    assert total < 500_000  # a few hundred KB
    picks = {"cu_solid_400K.extxyz": [0, 9], "cu_failed_simulation.extxyz": [0, 10, 22, 31, 34]}
    for name, frames in picks.items():
        data = (DEMO / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() in readme
        source = ROOT / "sample_data" / name
        if source.exists():  # byte for byte the frames the README names
            original = _frames(source)
            assert data == b"".join(original[i] for i in frames)


def test_default_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv("QUESTS_DATA_DIR", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    (empty / "backup.tar.gz").write_bytes(b"x")  # an archive is no structure file
    folder, why = paths.choose_data_dir(empty)
    assert folder == paths.CHECKOUT_DATA_DIR and "checkout" in why  # this is a checkout
    monkeypatch.setattr(paths, "CHECKOUT_DATA_DIR", tmp_path / "no-checkout")
    folder, why = paths.choose_data_dir(empty)  # a wheel install
    assert folder == paths.DEMO_DATA_DIR and "demo data" in why
    assert sorted(p.name for p in folder.glob("*.extxyz")) == DEMO_FILES
    (empty / "run.lammpstrj.gz").write_bytes(b"x")
    folder, why = paths.choose_data_dir(empty)
    assert folder == empty and "current directory" in why
    monkeypatch.chdir(empty)
    assert paths.default_data_dir() == empty
    monkeypatch.setenv("QUESTS_DATA_DIR", str(tmp_path))
    assert paths.choose_data_dir(empty) == (tmp_path, "from $QUESTS_DATA_DIR")


def test_help_names_the_command_it_was_started_as(capsys):
    assert build_parser().format_help().startswith("usage: launch.py")
    from quests_core.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["serve", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: quests-dashboard serve") and "launch.py" not in out
    assert "demo data shipped with the package" in " ".join(out.split())


# ---------------------------------------------------------------------------------------
# the real thing: build, install, serve
# ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _satisfied(requirement: str) -> bool:
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate():
        return True
    try:
        return req.specifier.contains(metadata.version(req.name), prereleases=True)
    except metadata.PackageNotFoundError:
        return False


def _build_wheel(src: Path, out: Path) -> Path:
    """The wheel of ``src``, built offline (no build isolation, no package index) with the
    build backend pyproject.toml asks for, which the test extra installs."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    requires = tomllib.loads((src / "pyproject.toml").read_text())["build-system"]["requires"]
    offline = all(_satisfied(r) for r in requires)
    assert offline, (f"this environment lacks the build backend {requires} (the test extra "
                     "installs it): the test builds offline, without the package index")
    try:
        import build  # noqa: F401

        cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)]
        if offline:
            cmd.insert(3, "--no-isolation")
    except ImportError:
        cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)]
        if offline:
            cmd += ["--no-build-isolation", "--no-index"]
    done = subprocess.run(cmd, cwd=src, capture_output=True, text=True, timeout=300)
    hint = "" if offline else (
        f" (this environment lacks the build backend {requires}: the isolated build fetched "
        "it from the package index; installed here, the build runs offline)")
    assert done.returncode == 0, (
        f"{' '.join(cmd)} failed{hint}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    wheels = list(out.glob("quests_dashboard-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _fresh_venv(where: Path) -> Path:
    """A new venv whose dependencies are this environment's packages; its python.

    ``--system-site-packages`` gives the base interpreter's packages; when this
    environment is itself a venv, a ``.pth`` file adds its site-packages after the new
    venv's own (a plain path line: this environment's editable install of the project,
    a ``.pth`` hook, is not run there, so the wheel is what gets imported).
    """
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(where)], check=True, timeout=120)
    python = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    if sys.prefix != sys.base_prefix:
        Path(purelib, "_quests_test_parent_env.pth").write_text("\n".join(ours) + "\n")
    return python


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _served_document(url: str, monkeypatch) -> str:
    """The JSON of the Bokeh document a new session of ``url`` gets (as sent: the
    dashboard's own models are not rebuilt in this process)."""
    from bokeh.client import pull_session
    from bokeh.protocol.messages.pull_doc_reply import pull_doc_reply

    got = {}
    with monkeypatch.context() as patch:
        patch.setattr(pull_doc_reply, "push_to_document",
                      lambda self, doc: got.setdefault("doc", self.content["doc"]))
        with pull_session(url=url):
            pass
    return json.dumps(got["doc"], default=str)


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="process groups")
def test_wheel_install_serves_the_demo_data(tmp_path, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    wheel = _build_wheel(src, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    for name in [*DEMO_FILES, "README.md"]:
        assert f"dashboard/demo_data/{name}" in names
    assert not any(n.startswith(("sample_data/", "tests/")) for n in names)

    python = _fresh_venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index",
                    "--force-reinstall", "-q", str(wheel)], check=True, timeout=300)
    script = python.parent / "quests-dashboard"
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("QUESTS_DATA_DIR", "PYTHONPATH")}

    helped = subprocess.run([str(script), "serve", "--help"], cwd=empty, env=env,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: quests-dashboard serve"), helped.stdout[:300]
    assert "launch.py" not in helped.stdout

    port = _free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(script), "serve", "--no-show", "--port", str(port), "--address", "127.0.0.1"],
            cwd=empty, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/app"
        deadline, status, page = time.monotonic() + 150, None, b""
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                status, page = _get(url)
                if status == 200:
                    break
            time.sleep(0.5)
        text = log_path.read_text()
        assert status == 200, f"no page (status {status}); server log:\n{text[-3000:]}"
        # the start-up line: the demo data of the installed package, not a checkout's
        first = text.splitlines()[0]
        demo = re.fullmatch(r"quests-dashboard serve: data directory (\S+) \((.*)\)", first)
        assert demo, first
        served = Path(demo.group(1))
        assert served.parts[-2:] == ("dashboard", "demo_data") and "demo data" in demo.group(2)
        assert tmp_path in served.parents and ROOT not in served.parents

        html = page.decode()
        assert "QUESTS dashboard" in html
        # every script and style of the page is served by this server (no other host)
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert not [a for a in assets if re.match(r"(https?:)?//", a)], assets
        local = sorted({a for a in assets if "static/" in a})
        assert local
        for asset in local:
            code, _ = _get(f"http://127.0.0.1:{port}/{asset.removeprefix('./')}")
            assert code == 200, asset

        # the data picker of a new session lists the demo files, both chosen
        doc = _served_document(url, monkeypatch)
        listed = re.search(r'"title": "Files in the data directory", "options": (\[[^]]*\])', doc)
        assert listed and json.loads(listed.group(1)) == DEMO_FILES
        assert proc.poll() is None, log_path.read_text()[-3000:]
    finally:
        stop_process_group(proc)
