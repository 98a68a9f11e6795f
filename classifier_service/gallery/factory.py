"""Opens the gallery store a replica is configured for (the one place that knows the backends)."""

from __future__ import annotations

from pathlib import Path

from classifier_service.gallery.store import GalleryStore
from facewire.storage.url import configured


def open_gallery_store(folder: Path, database_url: str = "", replica: str = "default") -> GalleryStore:
    """The replica's store: SQLite file ``folder/gallery.sqlite`` (its own), or the gallery of record in schema
    ``gallery`` of a ``postgresql://`` database_url, shared by every replica (see docs/storage.md)."""
    target = configured(database_url, folder / "gallery.sqlite")
    if target.engine == "postgresql":
        from classifier_service.gallery.pg_store import PostgresGalleryStore  # psycopg is an optional extra

        folder.mkdir(parents=True, exist_ok=True)  # the FAISS index file stays a local cache here
        shared = PostgresGalleryStore(target.url, replica)
        shared.adopt(replica)  # from the schema per replica of earlier versions, once
        return shared
    from classifier_service.gallery.sqlite_store import SqliteGalleryStore

    assert target.path is not None
    created = not target.path.exists()
    store = SqliteGalleryStore(target.path)
    store.created = created
    return store
