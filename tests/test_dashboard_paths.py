"""Path safety of the dashboard's data directory (no browser)."""

from __future__ import annotations

import os

import pytest

from dashboard.paths import (
    MAX_UPLOAD_NAME,
    check_data_dir,
    check_upload_size,
    is_data_file,
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
    # a long name is shortened in its stem: the endings still say the format (a 300-
    # character upload was refused as "not a structure file" when the cut took them)
    for ending in (".extxyz", ".lammpstrj.gz", ".xyz.gz"):
        long = safe_upload_name("run_" + "x" * 296 + ending)
        assert len(long) == MAX_UPLOAD_NAME and long.endswith(ending) and is_data_file(long)
    check_upload_size("a.extxyz", 10, 10)
    with pytest.raises(QuestsError, match="larger than"):
        check_upload_size("a.extxyz", 11, 10)
    with pytest.raises(QuestsError, match="empty"):
        check_upload_size("a.extxyz", 0, 10)


def test_listing_skips_loops_long_names_and_unreadable_entries(tree, monkeypatch, caplog):
    """A symlink loop, a link to a name too long for the system, an unreadable file or
    folder and a name that is not UTF-8 are skipped (logged, counted); the rest is listed
    and nothing raises."""
    from dashboard import paths
    from dashboard.paths import scan_data_files

    os.symlink("loop.extxyz", tree / "loop.extxyz")  # points at itself
    os.symlink("b.xyz", tree / "sub" / "a.xyz")
    os.symlink("a.xyz", tree / "sub" / "b2.xyz")  # a chain is fine
    os.symlink("x" * 300 + ".extxyz", tree / "long.extxyz")  # target name > 255 characters
    (tree / "locked").mkdir()
    (tree / "locked" / "c.extxyz").write_text("x")
    (tree / "secret.extxyz").write_text("x")
    (tree / "z.extxyz").write_text("x")
    (tree.parent / "loopdir").mkdir()
    os.symlink(tree, tree / "self")  # a folder link back to the top: not entered
    with pytest.raises(QuestsError, match="cannot be opened"):  # the browser's path: one line
        resolve_in_dir(tree, "loop.extxyz")
    with pytest.raises(QuestsError, match="name too long|no such file"):
        resolve_in_dir(tree, "long.extxyz")
    with pytest.raises(QuestsError, match="name too long|cannot be opened"):
        resolve_in_dir(tree, "y" * 300 + ".extxyz")

    # tests run as root, where chmod 000 does not stop reads: simulate the permissions
    real_scandir, real_access = os.scandir, os.access

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def access(path, mode, **kw):
        return False if str(path).endswith("secret.extxyz") else real_access(path, mode, **kw)

    monkeypatch.setattr(paths.os, "scandir", scandir)
    monkeypatch.setattr(paths.os, "access", access)
    with caplog.at_level("WARNING", logger="dashboard.paths"):
        listing = scan_data_files(tree)
    assert listing.files == ["a.extxyz", "inside_link.extxyz", "z.extxyz", "sub/a.xyz",
                             "sub/b.xyz", "sub/b2.xyz"]
    reasons = dict(listing.skipped)
    assert reasons["loop.extxyz"] == "symlink loop"
    assert reasons["locked/"].startswith("not readable")
    assert reasons["secret.extxyz"].startswith("not readable")
    assert reasons["escape.extxyz"] == "leads outside the data directory"
    assert "long.extxyz" in reasons
    assert "loop.extxyz" in caplog.text and "locked" in caplog.text
    assert f"{len(listing.skipped)} entries of the data directory skipped" in listing.summary()
    assert list_data_files(tree) == listing.files
    assert scan_data_files(tree, max_files=2).truncated


def test_listing_skips_names_that_are_not_utf8(tmp_path):
    from dashboard.paths import scan_data_files

    (tmp_path / "good.extxyz").write_text("x")
    try:
        (tmp_path / os.fsdecode(b"bad\xff.extxyz")).write_text("x")
    except (OSError, UnicodeEncodeError):  # pragma: no cover - file system refuses it
        pytest.skip("the file system refuses a name that is not UTF-8")
    listing = scan_data_files(tmp_path)
    assert listing.files == ["good.extxyz"]
    assert [r for _, r in listing.skipped] == ["name is not valid UTF-8"]


def test_upload_cap_fits_the_websocket_limit():
    from dashboard.paths import (
        effective_upload_mb,
        server_message_limit,
        upload_too_large_message,
        websocket_message_bytes,
    )

    assert effective_upload_mb(50, websocket_message_bytes(50)) == 50
    assert effective_upload_mb(1, websocket_message_bytes(1)) == 1
    assert effective_upload_mb(50, 20 * 1024 * 1024) < 15.6  # Bokeh's default limit
    assert server_message_limit(["panel", "--websocket-max-message-size", "123"]) == 123
    assert server_message_limit(["panel", "--websocket-max-message-size=77"]) == 77
    assert server_message_limit(["panel"]) == 20 * 1024 * 1024
    assert upload_too_large_message("big.xyz", 60_200_000, 50_000_000).startswith(
        "big.xyz: 60.2 MB is over the 50 MB upload limit")
