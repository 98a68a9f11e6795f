"""The face library behind the dashboard: gallery commands over MQTT, uploads checked here, thumbnails kept here.

Every change goes to the classifiers as a gallery command (the same ones
``facewire enroll`` / ``forget`` / ``unknowns`` send) through
:class:`GalleryClient`; the classifiers do the quality checks and answer per
photo. Uploads are decoded here first (type, size, pixel count), then
re-encoded as a JPEG no larger than the broker's packet limit, so nothing but a
plain image ever reaches a classifier. A small thumbnail of each accepted photo
is kept under ``web.data_dir`` for the library page and deleted when the
person is forgotten (by the dashboard or by anyone else: the ``forgotten``
gallery event), and moved with them when they are renamed (``renamed``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from classifier_service.gallery.client import GalleryClient, GalleryTimeout
from facewire.config import Settings
from facewire.errors import FacewireError, ImageError, SchemaError
from facewire.images import decode_image
from facewire.schema.gallery import GalleryEvent, valid_person
from facewire.topics import valid_node_id

SEND_SIDE = 1024  # longest side of the image sent to the classifiers
SEND_BYTES = 180 * 1024  # base64 of this stays under mosquitto's max_packet_size (256 KB)
THUMB_SIDE = 160
THUMB_NAME = re.compile(r"[0-9a-f]{16}\.jpg")
HELD_WAIT = 15.0  # seconds to wait for the replica holding a result or cluster


def _held(body: dict[str, Any]) -> bool:
    """Commands that only the replica holding the result or cluster can act on."""
    return body.get("op") in ("reject", "relabel", "name-cluster")


def valid_result(text: str) -> str:
    """``NODE/SEQ`` of a result, or UploadRefused."""
    node, _, seq = text.partition("/")
    if not valid_node_id(node) or not seq.isdigit() or len(seq) > 18:
        raise UploadRefused(f"not a result id (NODE/SEQ): {text[:80]!r}")
    return text


class UploadRefused(FacewireError):
    """An uploaded file is not an image we accept; the message says why."""


@dataclass(frozen=True)
class PhotoOutcome:
    """What became of one uploaded photo."""

    filename: str
    accepted: bool
    reason: str
    quality: dict[str, float] = field(default_factory=dict)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise UploadRefused("cannot re-encode the image")
    return encoded.tobytes()


def prepare_photo(filename: str, data: bytes, max_bytes: int) -> bytes:
    """Decode an upload (refusing non-images, oversize files, pixel bombs) and re-encode it as a small JPEG."""
    label = filename or "upload"
    if len(data) > max_bytes:
        raise UploadRefused(f"{label}: larger than the limit of {max_bytes} bytes")
    if not data:
        raise UploadRefused(f"{label}: empty file")
    try:
        image = _shrink(decode_image(data, label), SEND_SIDE)
    except ImageError as exc:  # the library's detail (a Python repr) stays out of the page
        raise UploadRefused(str(exc).split(" (", 1)[0]) from exc
    for quality in (90, 80, 70, 60):
        encoded = _jpeg(image, quality)
        if len(encoded) <= SEND_BYTES:
            return encoded
    return _jpeg(_shrink(image, SEND_SIDE // 2), 70)


def person_name(name: str) -> str:
    """A valid person name, or UploadRefused with the reason."""
    try:
        return valid_person(name.strip())
    except SchemaError as exc:
        raise UploadRefused(f"not a usable person name: {exc.detail or exc.reason}") from exc


class Library:
    """Gallery commands for the dashboard (blocking: call them from a worker thread)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.photos_dir = settings.web.data_dir / "photos"
        self.timeout = settings.gallery.command_timeout

    def _client(self, actor: str) -> GalleryClient:
        return GalleryClient(self.settings.mqtt, actor=f"web:{actor}")

    def people(self) -> dict[str, int]:
        """Enrolled people and their embedding counts (the largest any replica reports)."""
        with self._client("status") as client:
            events = client.gather({"op": "status"}, quiet=0.3, timeout=5.0)
        people: dict[str, int] = {}
        for event in events:
            for person, count in dict(event.get("people_list") or {}).items():
                people[str(person)] = max(int(count), people.get(str(person), 0))
        return dict(sorted(people.items()))

    def enroll(self, person: str, photos: list[tuple[str, bytes]], actor: str) -> list[PhotoOutcome]:
        """Send each photo (already prepared) to the classifiers; their per-photo verdicts, thumbnails kept."""
        outcomes = []
        with self._client(actor) as client:
            for filename, jpeg in photos:
                command = {"op": "enroll", "person": person, "images": [base64.b64encode(jpeg).decode()]}
                event = client.request(command, timeout=self.timeout)[0]
                if event.get("event") == "error":
                    outcomes.append(PhotoOutcome(filename, False, f"{event.get('reason')}: {event.get('detail')}"))
                    continue
                verdict: dict[str, Any] = (event.get("results") or [{}])[0]
                accepted = bool(verdict.get("accepted"))
                quality = {k: round(float(v), 1) for k, v in dict(verdict.get("quality") or {}).items()}
                outcomes.append(PhotoOutcome(filename, accepted, str(verdict.get("reason", "")), quality))
                if accepted:
                    self.save_thumbnail(person, jpeg)
        return outcomes

    def command(self, body: dict[str, Any], actor: str) -> list[dict[str, Any]]:
        """One gallery command (forget, reject, relabel, name-cluster) and its final events.

        A result or cluster no replica holds is only answered with ``not-held``: that ends
        the wait early with a clear error instead of a timeout.
        """
        with self._client(actor) as client:
            request_id = client.send(body)
            try:
                return client.wait(request_id, str(body["op"]), 1, HELD_WAIT if _held(body) else self.timeout)
            except GalleryTimeout:
                if not _held(body) or not any(e.get("event") == "not-held" for e in client.events(request_id)):
                    raise
            raise FacewireError(f"no classifier holds {body.get('result') or body.get('cluster')} (any more)")

    def unknowns(self) -> list[dict[str, Any]]:
        with self._client("unknowns") as client:
            events = client.gather({"op": "unknowns"}, quiet=0.5, timeout=10.0)
        return sorted((c for e in events for c in e.get("clusters", [])), key=lambda c: -int(c["size"]))

    def _person_dir(self, person: str) -> Path:
        folder = (self.photos_dir / valid_person(person)).resolve()
        if not folder.is_relative_to(self.photos_dir.resolve()):
            raise UploadRefused(f"bad person folder {person!r}")
        return folder

    def save_thumbnail(self, person: str, jpeg: bytes) -> None:
        image = decode_image(jpeg, "thumbnail")
        folder = self._person_dir(person)
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(jpeg).hexdigest()[:16] + ".jpg"
        (folder / name).write_bytes(_jpeg(_shrink(image, THUMB_SIDE), 80))

    def thumbnails(self, person: str) -> list[str]:
        try:
            folder = self._person_dir(person)
        except (SchemaError, UploadRefused):
            return []
        return sorted(p.name for p in folder.glob("*.jpg") if THUMB_NAME.fullmatch(p.name)) if folder.is_dir() else []

    def thumbnail_path(self, person: str, name: str) -> Path | None:
        """The file of one thumbnail, or None (never a path outside the thumbnails folder)."""
        if not THUMB_NAME.fullmatch(name):
            return None
        try:
            path = self._person_dir(person) / name
        except (SchemaError, UploadRefused):
            return None
        return path if path.is_file() else None

    def erase_thumbnails(self, person: str) -> None:
        try:
            folder = self._person_dir(person)
        except (SchemaError, UploadRefused):
            return
        shutil.rmtree(folder, ignore_errors=True)

    def move_thumbnails(self, old: str, new: str) -> None:
        """A renamed person keeps their thumbnails (once: later calls find nothing to move)."""
        try:
            source, target = self._person_dir(old), self._person_dir(new)
        except (SchemaError, UploadRefused):
            return
        if source.is_dir() and not target.exists():
            source.rename(target)

    def on_gallery_event(self, event: GalleryEvent) -> None:
        """A person forgotten by anyone loses their thumbnails here too; a renamed one keeps them."""
        person, kind, new = event.get("person"), event.event, event.get("to")
        if kind == "forgotten" and isinstance(person, str):
            self.erase_thumbnails(person)
        elif kind == "renamed" and isinstance(person, str) and isinstance(new, str):
            self.move_thumbnails(person, new)
