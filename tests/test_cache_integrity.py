"""Cache entries are checked with a real digest (issue "Nothing lost and nothing silent", 6).

A same-size change inside an entry (two descriptor values swapped) is found by
the BLAKE2b digest recorded in the metadata, warned about in one line and
recomputed; an entry of the earlier format is a miss; an entry path that is a
directory (or a cache folder that is a file) gives the result computed without
the cache and one warning line, never an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write
from conftest import cu_frames

import quests_core as qc
from quests_core.cache import ENTRY_FORMAT, CacheWarning, DescriptorCache, blake2b_bytes
from quests_core.cache_keys import checksum_bytes
from quests_core.pipeline import file_descriptors

ROOT = Path(__file__).resolve().parents[1]
K, CUTOFF, H = 8, 4.0, 0.015


@pytest.fixture()
def traj(tmp_path) -> Path:
    path = tmp_path / "cu.extxyz"
    write(path, cu_frames(3))
    return path


def _entry(cache: DescriptorCache) -> tuple[str, Path, Path]:
    (key,) = cache.entries()
    folder = cache.directory / "descriptors"
    return key, folder / f"{key}.npy", folder / f"{key}.json"


def _swap_two_values(data: Path) -> None:
    """Swap columns 0 and 5 of row 0 in place: same size, same 4 KiB block, same word sum."""
    raw = bytearray(data.read_bytes())
    a, b = 128, 128 + 5 * 8
    raw[a : a + 8], raw[b : b + 8] = raw[b : b + 8], raw[a : a + 8]
    data.write_bytes(bytes(raw))


def _descriptors(path: Path, cache: DescriptorCache, mmap: bool = False) -> np.ndarray:
    return np.asarray(
        file_descriptors(path, k=K, cutoff=CUTOFF, cache=cache, mmap=mmap).descriptors
    )


@pytest.mark.parametrize("mmap", [False, True])
def test_swapped_values_are_found_warned_and_recomputed(tmp_path, traj, mmap):
    cache = DescriptorCache(tmp_path / "cache")
    x = _descriptors(traj, cache)
    h_true = qc.entropy(x, H)
    key, data, meta = _entry(cache)
    before = data.read_bytes()
    _swap_two_values(data)
    after = data.read_bytes()
    assert len(after) == len(before) and after != before
    # the block word sum of the earlier entry format could not see this change
    assert checksum_bytes(after[128:]) == checksum_bytes(before[128:])
    assert blake2b_bytes(after[128:]) != json.loads(meta.read_text())["blake2b"]
    # what the swapped entry would have given: another H
    poisoned = np.load(data)
    assert qc.entropy(poisoned, H) != h_true
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = _descriptors(traj, DescriptorCache(tmp_path / "cache"), mmap=mmap)
    lines = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert lines[0] == (
        f"cache entry {data} is damaged (its BLAKE2b digest does not match: changed on disk); "
        "recomputing it"
    )
    np.testing.assert_array_equal(again, x)
    assert qc.entropy(again, H) == h_true
    # the entry was replaced (atomically, by rename) and reads without a word now
    assert data.read_bytes() == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = DescriptorCache(tmp_path / "cache")
        np.testing.assert_array_equal(_descriptors(traj, cache), x)
    assert cache.hits == 1 and not list(cache.directory.rglob("*.tmp"))


def test_earlier_entry_format_is_a_quiet_miss_and_replaced(tmp_path, traj):
    cache = DescriptorCache(tmp_path / "cache")
    x = _descriptors(traj, cache)
    key, data, meta = _entry(cache)
    record = json.loads(meta.read_text())
    assert record["entry_format"] == ENTRY_FORMAT == 2
    assert record["blake2b"] == blake2b_bytes(data.read_bytes()[128:])
    old = {k: v for k, v in record.items() if k not in ("entry_format", "blake2b")}
    old["checksum"] = checksum_bytes(data.read_bytes()[128:])  # what version 1 recorded
    meta.write_text(json.dumps(old))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a miss, not a warning
        cache = DescriptorCache(tmp_path / "cache")
        assert cache.get(key) is None
        np.testing.assert_array_equal(_descriptors(traj, cache), x)
    assert cache.misses == 1
    assert json.loads(meta.read_text())["entry_format"] == ENTRY_FORMAT


@pytest.mark.parametrize("which", ["data", "meta", "both"])
def test_entry_path_that_is_a_directory_computes_without_the_cache(tmp_path, traj, which):
    cache = DescriptorCache(tmp_path / "cache")
    x = _descriptors(traj, cache)
    key, data, meta = _entry(cache)
    for path in {"data": [data], "meta": [meta], "both": [data, meta]}[which]:
        path.unlink()
        path.mkdir()
    (data.parent / "keep").mkdir(exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = DescriptorCache(tmp_path / "cache")
        again = _descriptors(traj, cache)
        mapped = _descriptors(traj, cache, mmap=True)
    np.testing.assert_array_equal(again, x)
    np.testing.assert_array_equal(mapped, x)
    lines = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(lines) == 1, lines
    bad = data if which == "data" else meta  # the metadata is looked at first
    assert lines[0] == (
        f"cache entry {bad} cannot be used (it is a directory); computing without the cache"
    )
    assert data.is_dir() or meta.is_dir()  # a directory is not the cache's to delete
    assert not list(cache.directory.rglob("*.tmp"))
    assert not list(Path(tempfile.gettempdir()).glob("quests-uncached-*"))


def test_cache_folder_that_is_a_file_computes_without_the_cache(tmp_path, traj):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "descriptors").write_text("not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = DescriptorCache(tmp_path / "cache")
        x = _descriptors(traj, cache)
        y = cache.get_or_compute(cu_frames(2), k=K, cutoff=CUTOFF)
    np.testing.assert_array_equal(x, qc.descriptors(read(traj, ":"), k=K, cutoff=CUTOFF))
    assert y.shape[0] == sum(len(a) for a in cu_frames(2))
    lines = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert lines and all("computing without the cache" in t for t in lines), lines
    assert not list(Path(tempfile.gettempdir()).glob("quests-uncached-*"))


def test_damaged_table_entry_is_recomputed(tmp_path):
    import pandas as pd

    cache = DescriptorCache(tmp_path / "cache")
    table = pd.DataFrame({"a": np.arange(50), "b": np.linspace(0, 1, 50)})
    path = cache.put_table("t", table)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match=r"tables/t.parquet is damaged \(its BLAKE2b digest"):
        assert cache.get_table("t") is None
    assert "t" not in cache.entries("tables")


# ------------------------------------------------------------------ the CLI


def _cli(args: list, cache_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, QUESTS_BACKEND="numba", NUMBA_NUM_THREADS="1",
               QUESTS_CACHE_DIR=str(cache_dir))
    return subprocess.run(
        [sys.executable, "-m", "quests_core.cli", *map(str, args), "--no-progress",
         "-k", str(K), "--cutoff", str(CUTOFF)],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )


def _h(stdout: str) -> float:
    lines = stdout.strip().splitlines()
    header = lines[-2].split()
    return float(lines[-1].split()[header.index("H")])


@pytest.mark.timeout(300)
def test_cli_swapped_entry_and_directory_entry(tmp_path, traj):
    cache_dir = tmp_path / "cache"
    first = _cli(["entropy", traj], cache_dir)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    h_true = _h(first.stdout)
    key, data, meta = _entry(DescriptorCache(cache_dir))
    _swap_two_values(data)
    second = _cli(["entropy", traj], cache_dir)
    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines() == [
        f"warning: cache entry {data} is damaged (its BLAKE2b digest does not match: changed "
        "on disk); recomputing it"
    ]
    assert _h(second.stdout) == h_true
    data.unlink()
    meta.unlink()
    data.mkdir()
    third = _cli(["entropy", traj], cache_dir)
    assert third.returncode == 0, third.stderr
    (line,) = third.stderr.splitlines()
    assert line == (f"warning: cache entry {data} cannot be used (it is a directory); "
                    "computing without the cache")
    assert _h(third.stdout) == h_true
