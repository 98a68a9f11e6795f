"""The API's work: recognition through the classifiers, subject changes as gallery commands, store queries.

Blocking calls (MQTT round trips, database reads): the routes run them in a worker thread.
"""

from __future__ import annotations

import base64
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from alert_service.store import LogQuery
from alert_service.store_factory import open_alert_store, open_result_log
from classifier_service.gallery.client import GalleryClient
from facewire.config import Settings
from facewire.errors import FacewireError
from facewire.mqtt import Refusal
from facewire.schema import FaceEmbedding
from facewire_console.api.errors import ApiError
from facewire_console.api.feeds import API_NODE, Feeds
from facewire_console.api.photos import prepare

TOP_K = 3


def store_target(url: str, path: Path) -> Path | str | None:
    """A store's postgresql:// URL, else its SQLite file once it exists (None: nothing recorded yet)."""
    return url or (path if path.exists() else None)


def _face(face: dict[str, Any], scale: float) -> dict[str, Any]:
    x, y, w, h = (float(v) / scale for v in face["bbox"])
    return {
        "name": str(face["name"]),
        "known": bool(face["known"]),
        "score": float(face["score"]),
        "bbox": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)],
        "candidates": [{"name": str(c["name"]), "score": float(c["score"])} for c in face["candidates"]],
    }


class Gateway:
    """Recognition, subjects and queries for the routes (every method blocks)."""

    def __init__(self, settings: Settings, feeds: Feeds) -> None:
        self.settings, self.feeds = settings, feeds
        self.timeout = settings.gallery.command_timeout
        self._seq = time.time_ns() // 1000  # grows across restarts, as an edge node's sequence would

    def _classifier(self) -> dict[str, Any]:
        online = self.feeds.online()
        if not online:
            raise ApiError("no-classifier", "no classifier replica is online")
        return max(online, key=lambda status: float(status.get("ts", 0)))

    def recognize_image(self, data: bytes) -> dict[str, Any]:
        """Every face of the photo, largest first, as the classifiers name it (boxes in the photo's pixels)."""
        jpeg, scale = prepare("image", data, len(data))
        status = self._classifier()
        answer = self.feeds.identify(jpeg, TOP_K, self.timeout)
        if answer is None:
            raise ApiError("no-classifier", f"no classifier answered within {self.timeout:g}s")
        if not answer.get("ok"):
            raise ApiError("unreadable-image", f"the classifier refused the image: {answer.get('error')}")
        faces = [_face(face, scale) for face in answer["results"][0]["faces"]]
        version = str(status.get("gallery_version", ""))
        return {"faces": faces, "model": str(status.get("model", "")), "gallery_version": version}

    def recognize_embedding(self, vector: list[float], model: str) -> dict[str, Any]:
        """The classifiers' answer for one embedding, sent as node ``api`` (it is in the detection log)."""
        status = self._classifier()
        if model != status.get("model"):
            raise ApiError("invalid", f"model {model!r}: the classifiers serve {status.get('model')!r}")
        emb = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(emb))
        if not math.isfinite(norm) or norm == 0.0:
            raise ApiError("invalid", "the embedding must be finite and not all zeros")
        self._seq += 1
        seq = self._seq
        box = (0.0, 0.0, 0.0, 0.0)
        face = FaceEmbedding(API_NODE, seq, time.time(), seq, seq, box, 1.0, {}, model, emb / norm)
        result = self.feeds.classify(face, self.timeout)
        if isinstance(result, Refusal):
            raise ApiError("no-classifier", f"the broker refused {result.topic} ({result.reason}): see docs/api.md")
        if result is None:
            raise ApiError("no-classifier", f"no classifier answered within {self.timeout:g}s (embedding size?)")
        candidates = [{"name": c.name, "score": float(c.score)} for c in result.candidates]
        named = {"name": result.name, "known": result.known, "score": float(result.score)}
        face_answer = {**named, "bbox": [0.0, 0.0, 0.0, 0.0], "candidates": candidates}
        return {"faces": [face_answer], "model": result.model, "gallery_version": result.gallery_version}

    def subjects(self) -> list[dict[str, Any]]:
        """Enrolled people, their photo (embedding) counts and when and where they were last seen."""
        people: dict[str, int] = {}
        for event in self.gather({"op": "status"}):
            for person, count in dict(event.get("people_list") or {}).items():
                people[str(person)] = max(int(count), people.get(str(person), 0))  # the largest any replica has
        database = store_target(self.settings.recorder.database_url, self.settings.recorder.database)
        log = open_result_log(database) if database is not None else None
        try:
            rows = []
            for name, count in sorted(people.items()):
                seen = log.last_seen(name) if log is not None else None
                last = {"ts": seen.ts, "node": seen.node} if seen is not None else None
                rows.append({"name": name, "photos": count, "last_seen": last})
            return rows
        finally:
            if log is not None:
                log.close()

    def _replicas(self) -> int:
        return max(1, len(self.feeds.online()))

    def gather(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """A gallery query answered by every replica that answers (status, whereis)."""
        try:
            with GalleryClient(self.settings.mqtt, actor="api") as client:
                return client.gather(body, quiet=0.3, timeout=5.0)
        except FacewireError as exc:
            raise ApiError("no-classifier", str(exc)) from exc

    def gallery(self, body: dict[str, Any], actor: str) -> list[dict[str, Any]]:
        """One gallery command, answered by every online replica; their final events."""
        try:
            with GalleryClient(self.settings.mqtt, actor=f"api:{actor}") as client:
                return client.request(body, self._replicas(), self.timeout)
        except FacewireError as exc:
            raise ApiError("no-classifier", str(exc)) from exc

    def enroll(self, person: str, uploads: list[tuple[str, bytes]], actor: str) -> list[dict[str, Any]]:
        """Check every upload here (any oversize or unreadable one refuses them all: nothing is sent),
        then enrol them one by one on every replica; one verdict per upload, in order."""
        max_bytes = self.settings.web.max_photo_bytes
        ready = []
        for name, data in uploads:
            ready.append((name, prepare(name, data, max_bytes)[0]))
        verdicts = []
        for name, jpeg in ready:
            command = {"op": "enroll", "person": person, "images": [base64.b64encode(jpeg).decode()]}
            event = self.gallery(command, actor)[0]
            if event.get("event") == "error":
                raise ApiError("invalid", f"{name}: {event.get('reason')}: {event.get('detail', '')}".rstrip(": "))
            verdict: dict[str, Any] = (event.get("results") or [{}])[0]
            accepted = bool(verdict.get("accepted"))
            verdicts.append({"filename": name, "accepted": accepted, "reason": str(verdict.get("reason", ""))})
        return verdicts

    def log(self, query: LogQuery) -> list[dict[str, Any]]:
        database = store_target(self.settings.recorder.database_url, self.settings.recorder.database)
        if database is None:
            return []
        store = open_result_log(database)
        try:
            rows = []
            for row in store.query(query):
                rows.append(row)
                if len(rows) >= query.limit:
                    break
            return [_log_row(row) for row in rows]
        finally:
            store.close()

    def alerts(self, limit: int, unacked_only: bool, node: str | None) -> list[dict[str, Any]]:
        database = store_target(self.settings.alerts.database_url, self.settings.alerts.database)
        if database is None:
            return []
        store = open_alert_store(database)
        try:
            return [_alert(stored) for stored in store.alerts(limit, unacked_only=unacked_only, node=node)]
        finally:
            store.close()

    def acknowledge(self, key: str, by: str) -> bool:
        database = store_target(self.settings.alerts.database_url, self.settings.alerts.database)
        if database is None:
            return False
        store = open_alert_store(database)
        try:
            return store.acknowledge(key, by, time.time())
        finally:
            store.close()


def _log_row(row: Any) -> dict[str, Any]:
    return {
        "node": row.node,
        "seq": row.seq,
        "ts": row.ts,
        "name": row.name,
        "known": row.known,
        "score": float(row.score),
        "threshold": float(row.threshold),
        "model": row.model,
        "gallery_version": row.gallery_version,
        "candidates": [{"name": c.name, "score": float(c.score)} for c in row.candidates],
    }


def _alert(stored: Any) -> dict[str, Any]:
    alert = stored.alert
    return {
        "id": alert.id,
        "rule": alert.rule,
        "node": alert.node,
        "subject": alert.subject,
        "message": alert.message,
        "ts": alert.ts,
        "raised_at": alert.raised_at,
        "count": stored.count,
        "last_ts": stored.last_ts,
        "acked_at": stored.acked_at,
        "acked_by": stored.acked_by,
    }
