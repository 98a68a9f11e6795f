"""What the enrolment levers cost: seconds per enrolment photo and gallery rows per photo, as ratios.

The photos of data/sample go through ``check_photo`` (detect, check, embed) under each enrolment policy,
interleaved round by round so that a busy shared machine slows every policy alike; the result is each
policy's median time per photo over the plain policy's, and how many gallery rows a photo becomes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from classifier_service.gallery.enrolment import check_photo
from facewire.config import GallerySettings, ModelSettings
from facewire.faces import create_analyzer
from facewire.images import load_image
from facewire_console.demo import SAMPLE_DIR

ROUNDS = 3


def policies(sizes: tuple[int, ...]) -> dict[str, GallerySettings]:
    return {
        "plain": GallerySettings(),
        "flip": GallerySettings(enrol_flip=True),
        "views": GallerySettings(enrol_face_sizes=sizes),
        "views + flip": GallerySettings(enrol_face_sizes=sizes, enrol_flip=True),
    }


def run(model: str, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Per policy: median seconds per photo, its ratio to plain, and gallery rows per photo."""
    analyzer = create_analyzer(ModelSettings(embedder=model), det_threshold=0.6, min_face=20)
    images = [load_image(p) for p in sorted((SAMPLE_DIR / "lfw" / "known").glob("*/*.jpg"))]
    chosen = policies(sizes)
    times: dict[str, list[float]] = {name: [] for name in chosen}
    rows: dict[str, float] = {}
    check_photo(analyzer, images[0], chosen["plain"])  # warm-up: model loading is not enrolment
    for _ in range(ROUNDS):
        for name, policy in chosen.items():
            start = time.perf_counter()
            checks = [check_photo(analyzer, image, policy) for image in images]
            times[name].append((time.perf_counter() - start) / len(images))
            accepted = [c for c in checks if c.accepted]
            rows[name] = sum(1 + len(c.views) for c in accepted) / max(len(accepted), 1)
    plain = statistics.median(times["plain"])
    return {
        "photos": len(images),
        "sizes": list(sizes),
        "policies": {
            name: {
                "seconds_per_photo": statistics.median(t),
                "ratio": statistics.median(t) / plain,
                "rows_per_photo": rows[name],
            }
            for name, t in times.items()
        },
    }
