"""Secrets, keys and bridge snippets are written 0600 from their first byte (facewire_console.private_files)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from facewire_console.private_files import create_private, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_replaces_atomically_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "key"
    write_private(path, "one\n")
    first = path.stat().st_ino
    write_private(path, "two\n")
    assert path.read_text() == "two\n" and mode(path) == 0o600
    assert path.stat().st_ino != first  # a new file renamed over the old one
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no temporary left behind


def test_write_private_narrows_a_world_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("old\n")
    path.chmod(0o644)
    write_private(path, "new\n", in_place=True)
    assert mode(path) == 0o600 and path.read_text() == "new\n"


def test_in_place_keeps_the_inode_for_bind_mounts(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    write_private(path, "a long first content\n", in_place=True)
    inode = path.stat().st_ino
    write_private(path, "short\n", in_place=True)
    assert path.stat().st_ino == inode and path.read_text() == "short\n"


def test_create_private_keeps_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    assert create_private(path, "first\n")
    path.chmod(0o640)
    assert not create_private(path, "second\n")
    assert path.read_text() == "first\n" and mode(path) == 0o600


def test_a_failed_replace_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.mkdir()  # a folder where the file should be: the rename fails after the temporary is written
    (path / "inside").write_text("kept\n")
    with pytest.raises(OSError):
        write_private(path, "lost\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]
    assert (path / "inside").read_text() == "kept\n"
