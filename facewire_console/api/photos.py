"""Photos sent to the API: decoded here (type, size, pixel count), re-encoded as a JPEG small enough for one
MQTT message, so nothing but a plain image reaches a classifier."""

from __future__ import annotations

import cv2
import numpy as np

from facewire.errors import ImageError
from facewire.images import decode_image
from facewire_console.api.errors import ApiError

SEND_SIDE = 1024  # longest side of the image sent to the classifiers
SEND_BYTES = 180 * 1024  # base64 of this stays under mosquitto's max_packet_size (256 KB)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ApiError("unreadable-image", "cannot re-encode the image")
    return encoded.tobytes()


def prepare(label: str, data: bytes, max_bytes: int) -> tuple[bytes, float]:
    """(a JPEG of at most SEND_BYTES, its scale against the upload); ApiError 413 or 422 with the reason."""
    if len(data) > max_bytes:
        raise ApiError("too-large", f"{label}: larger than the limit of {max_bytes} bytes")
    if not data:
        raise ApiError("unreadable-image", f"{label}: empty file")
    try:
        original = decode_image(data, label)
    except ImageError as exc:  # the library's detail (a Python repr) stays out of the answer
        raise ApiError("unreadable-image", str(exc).split(" (", 1)[0]) from exc
    for side, quality in ((SEND_SIDE, 90), (SEND_SIDE, 75), (SEND_SIDE, 60), (SEND_SIDE // 2, 70)):
        image = _shrink(original, side)
        encoded = _jpeg(image, quality)
        if len(encoded) <= SEND_BYTES:
            return encoded, image.shape[1] / original.shape[1]
    raise ApiError("unreadable-image", f"{label}: cannot be made small enough to send")
