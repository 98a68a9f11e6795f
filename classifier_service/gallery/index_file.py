"""The FAISS index persisted beside the gallery store, checked before it is ever served.

``index.faiss`` holds the serialised index; ``index.json`` its gallery version,
row count, a hash of the store row ids in index order and the file's SHA-256.
Both are written to a temporary file and renamed, so a crash leaves either the
old pair, or a pair that does not match (and is rebuilt), never a half file that
is trusted. Any kind ``index_choice`` builds is saved; one that no longer fits the
gallery's size (a flat file of a gallery grown past the flat limit) is rebuilt
rather than served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from classifier_service import index_choice
from facewire.logs import kv

if TYPE_CHECKING:
    import faiss  # the `server` extra: imported by the functions that need it

log = logging.getLogger(__name__)
INDEX_FILE = "index.faiss"
META_FILE = "index.json"


def ids_digest(ids: list[int]) -> str:
    return hashlib.sha256(np.asarray(ids, dtype="<i8").tobytes()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def save_index(folder: Path, index: faiss.Index, ids: list[int], version: str) -> None:
    """Write the index and its metadata (atomically, each); a two-part index is written as one."""
    import faiss

    index = index_choice.merged(index)
    data = faiss.serialize_index(index).tobytes()
    _write_atomic(folder / INDEX_FILE, data)
    meta = {
        "version": version,
        "count": int(index.ntotal),
        "dim": int(index.d),
        "kind": index_choice.plan_of(index).kind,
        "ids_sha256": ids_digest(ids),
        "file_sha256": hashlib.sha256(data).hexdigest(),
    }
    _write_atomic(folder / META_FILE, json.dumps(meta).encode())


def load_index(folder: Path, ids: list[int], version: str) -> faiss.Index | None:
    """The saved index if it matches the store (version, ids, checksum, count); None (with a log line) if not."""
    reason = ""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        data = (folder / INDEX_FILE).read_bytes()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        reason = f"unreadable: {exc}"
    else:
        reason = _mismatch(meta, data, ids, version)
        if not reason:
            import faiss

            try:
                index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            except RuntimeError as exc:
                reason = f"does not deserialise: {str(exc)[:80]}"
            else:
                reason = _unfit(index, len(ids))
                if not reason:
                    return index
    log.warning(kv("index-file-rejected", folder=folder, reason=reason))
    return None


def _mismatch(meta: dict[str, object], data: bytes, ids: list[int], version: str) -> str:
    if meta.get("file_sha256") != hashlib.sha256(data).hexdigest():
        return "checksum mismatch (corrupt or half-written)"
    if meta.get("count") != len(ids) or meta.get("ids_sha256") != ids_digest(ids):
        return f"count/ids mismatch ({meta.get('count')} in file, {len(ids)} in store)"
    if meta.get("version") != version:
        return f"version {meta.get('version')} != store {version}"
    return ""


def _unfit(index: faiss.Index, rows: int) -> str:
    if index.ntotal != rows:
        return f"holds {index.ntotal} vectors, store has {rows}"
    try:
        plan = index_choice.plan_of(index)
    except ValueError as exc:
        return str(exc)
    return "" if index_choice.fits(plan, rows, int(index.d)) else f"a {plan.kind} index does not fit {rows} rows"
