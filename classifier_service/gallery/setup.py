"""Open one replica's gallery (store + index file + dataset folder) from the settings."""

from __future__ import annotations

import socket
from pathlib import Path

from classifier_service.gallery.factory import open_gallery_store
from classifier_service.gallery.manager import GalleryManager
from classifier_service.quality import cohort_for
from facewire.config import Settings
from facewire.faces import FaceAnalyzer, create_analyzer


def replica_id(instance: str) -> str:
    """``instance``, else this host's name: replicas scaled by compose share a store volume but each has its
    own host name (the container id), so no SQLite store is ever opened by two replicas."""
    return instance or socket.gethostname()


def store_dir(settings: Settings, instance: str) -> Path:
    """``<gallery.store_dir>/<replica id>``: each replica keeps its own store."""
    return settings.gallery.store_dir / replica_id(instance)


def legacy_cache_file(settings: Settings) -> Path:
    """The photo-hash embedding cache of classifier_service.gallery (purged on forget)."""
    return settings.model.cache_dir / "gallery" / "embeddings.sqlite"


def open_manager(settings: Settings, instance: str, analyzer: FaceAnalyzer | None = None) -> GalleryManager:
    """A GalleryManager on this replica's store; call ``open()`` on it to restore and sync."""
    folder = store_dir(settings, instance)
    store = open_gallery_store(folder, settings.gallery.database_url, replica_id(instance))
    face_analyzer = analyzer or create_analyzer(settings.model, det_threshold=0.6, min_face=20)
    conf = settings.classifier
    manager = GalleryManager(
        store,
        folder,
        conf.gallery,
        face_analyzer.embedder.model_id,
        settings.gallery,
        lambda: face_analyzer,
        settings.classifier_threshold(),
        conf.top_k,
        replica_id(instance),
        cohort_for(face_analyzer.embedder.model_id, conf),
    )
    manager.fresh_store = store.created
    return manager
