"""Path safety of the dashboard's data directory (no browser)."""

from __future__ import annotations

import os

import pytest

from dashboard.paths import (
    check_data_dir,
    check_upload_size,
    list_data_files,
    resolve_in_dir,
    safe_upload_name,
)
from quests_core.errors import QuestsError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.extxyz").write_text("x")
    (root / "sub" / "b.xyz").write_text("x")
    (root / "notes.txt").write_text("x")
    (root / ".hidden.extxyz").write_text("x")
    outside = tmp_path / "secret.extxyz"
    outside.write_text("x")
    os.symlink(outside, root / "escape.extxyz")
    os.symlink(root / "a.extxyz", root / "inside_link.extxyz")
    os.symlink(tmp_path, root / "up")
    return root


def test_resolve_inside(tree):
    assert resolve_in_dir(tree, "a.extxyz") == (tree / "a.extxyz").resolve()
    assert resolve_in_dir(tree, "sub/b.xyz") == (tree / "sub" / "b.xyz").resolve()
    # a symlink that stays inside the directory is fine
    assert resolve_in_dir(tree, "inside_link.extxyz") == (tree / "a.extxyz").resolve()


@pytest.mark.parametrize(
    "bad, words",
    [
        ("../secret.extxyz", "'..'"),
        ("sub/../../secret.extxyz", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\win.ini", "absolute"),
        ("escape.extxyz", "outside"),
        ("up/secret.extxyz", "outside"),
        ("missing.extxyz", "no such file"),
        ("", "empty"),
        ("a\x00.extxyz", "NUL"),
    ],
)
def test_resolve_refuses(tree, bad, words):
    with pytest.raises(QuestsError, match=words.replace("(", r"\(")):
        resolve_in_dir(tree, bad)


def test_listing_skips_escapes_and_non_data(tree):
    files = list_data_files(tree)
    assert files == ["a.extxyz", "inside_link.extxyz", "sub/b.xyz"]


def test_data_dir_must_exist(tmp_path):
    with pytest.raises(QuestsError, match="does not exist"):
        check_data_dir(tmp_path / "nope")
    assert check_data_dir(tmp_path) == tmp_path.resolve()


def test_upload_names_and_sizes():
    assert safe_upload_name("../../etc/passwd") == "passwd"
    assert safe_upload_name("C:\\Users\\me\\my file.extxyz") == "my_file.extxyz"
    assert safe_upload_name(".bashrc") == "bashrc"
    with pytest.raises(QuestsError):
        safe_upload_name("../")
    check_upload_size("a.extxyz", 10, 10)
    with pytest.raises(QuestsError, match="larger than"):
        check_upload_size("a.extxyz", 11, 10)
    with pytest.raises(QuestsError, match="empty"):
        check_upload_size("a.extxyz", 0, 10)
