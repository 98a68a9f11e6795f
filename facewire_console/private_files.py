"""Files only their owner may read (mode 0600): passwords, keys, session secrets, bridge snippets.

Every such file is written through here, so each is created with mode 0600 from its first byte (never
created readable and narrowed afterwards) and is either the old or the new content after a crash.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600


def write_private(path: Path, text: str, *, in_place: bool = False) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing it atomically (a temporary file renamed over it).

    ``in_place`` rewrites the existing file instead, keeping its inode: a file bind-mounted into a container
    (a compose secret) shows the change without a restart, at the cost of atomicity.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if in_place:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE)
        os.fchmod(descriptor, PRIVATE)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.truncate()
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def create_private(path: Path, text: str) -> bool:
    """Create ``path`` (mode 0600) holding ``text`` unless it exists; True when it was created.

    An existing file keeps its content and is narrowed to 0600."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        path.chmod(PRIVATE)
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    return True
