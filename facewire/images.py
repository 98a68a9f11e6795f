"""Reading image files safely: size limits, corrupt files and non-images give ImageError."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from facewire.errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def decode_image(data: bytes, label: str = "image") -> np.ndarray:
    """Decode image bytes to BGR; reject oversize files and decompression bombs before decoding."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{label}: {len(data)} bytes is larger than {MAX_IMAGE_BYTES}")
    try:
        from io import BytesIO

        with Image.open(BytesIO(data)) as header:
            width, height = header.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{label}: not a readable image ({exc})") from exc
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{label}: {width}x{height} exceeds {MAX_IMAGE_PIXELS} pixels")
    frame = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise ImageError(f"{label}: image data is corrupt")
    return frame


def load_image(path: Path) -> np.ndarray:
    """Read an image file as a BGR array (alpha dropped)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from exc
    return decode_image(data, str(path))
