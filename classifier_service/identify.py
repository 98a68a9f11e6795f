"""Search by photo: every face in an image, its box and the nearest enrolled people."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from classifier_service.matcher import Matcher
from classifier_service.quality import margin
from facewire.config import ClassifierSettings
from facewire.faces import FaceAnalyzer
from facewire.schema import Candidate


@dataclass(frozen=True)
class Identification:
    """One face of a photo: where it is and who it is (or ``unknown``), with the top-k candidates."""

    bbox: tuple[float, float, float, float]
    det: float
    name: str
    score: float
    known: bool
    candidates: tuple[Candidate, ...]
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)  # not in the report

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        del data["embedding"]
        data["bbox"] = [round(v, 1) for v in self.bbox]
        data["score"] = round(self.score, 4)
        data["candidates"] = [{"name": c.name, "score": round(c.score, 4)} for c in self.candidates]
        return data


def identify_image(
    analyzer: FaceAnalyzer, matcher: Matcher, image: np.ndarray, quality_slopes: Sequence[float] | None = None
) -> list[Identification]:
    """Detect, embed and match every face of ``image``, largest first, with the live classifier's decision:
    each face needs its quality margin (``quality_slopes``, default ``classifier.quality_slopes``'s default)."""
    faces = sorted(analyzer.faces(image), key=lambda f: -f.size)
    if not faces:
        return []
    analyzer.embed(faces)
    slopes = ClassifierSettings().quality_slopes if quality_slopes is None else quality_slopes
    embedded = [(f.embedding, margin(f.quality, slopes)) for f in faces if f.embedding is not None]
    matches = matcher.match(np.stack([e for e, _ in embedded]), np.array([m for _, m in embedded]))
    return [
        Identification(f.detection.bbox, f.detection.score, m.name, m.score, m.known, m.candidates, f.embedding)
        for f, m in zip(faces, matches, strict=True)
    ]
