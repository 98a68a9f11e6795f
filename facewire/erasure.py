"""Erasure markers: what audit trails and logs keep in place of a forgotten person's name."""

from __future__ import annotations

import hashlib


def erasure_marker(person: str) -> str:
    """What the audit trail keeps instead of an erased name: a marker with a short hash (answers "was X erased?")."""
    return "erased:" + hashlib.sha256(person.encode()).hexdigest()[:16]
