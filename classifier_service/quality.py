"""Quality-aware decisions (issue 23): the score needed to name a face rises with its quality shortfall.

The edge sends each face's quality with its embedding (``FaceEmbedding.quality``: ``size`` in pixels,
``sharpness`` as the Laplacian variance of the aligned crop, ``yaw`` from the landmarks). Each measure
becomes a shortfall in [0, 1] on a fixed scale chosen from what the models can use, not from a benchmark:

- size: 0 at 64 px and above (SFace's 112-px input keeps most of such a face), 1 at 16 px (the smallest
  face the detector finds), on a log scale between;
- sharpness: 0 at 100 and above (lfw-dev press photos: median 133), 1 at 10 (half the edge's gate of 20),
  on a log scale between;
- pose: |yaw| / 0.6, the edge's gate beyond which a face is not embedded at all.

The margin added to the threshold is ``slopes . shortfall``; the slopes are fitted on calibration folds
(``bench.calibration.fit_slopes``) and shipped as ``classifier.quality_slopes``. A face sent without
quality measures (an embedding from elsewhere) has no shortfall.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from facewire.config import ClassifierSettings

SIZE_FULL, SIZE_NONE = 64.0, 16.0
SHARP_FULL, SHARP_NONE = 100.0, 10.0
YAW_NONE = 0.6


def _log_shortfall(value: float, full: float, none: float) -> float:
    if value >= full:
        return 0.0
    if value <= none:
        return 1.0
    return math.log(full / value) / math.log(full / none)


def shortfall(quality: Mapping[str, float]) -> tuple[float, float, float]:
    """(size, sharpness, pose) shortfall of a face, each in [0, 1]; 0 for a measure that is absent."""
    size = quality.get("size")
    sharp = quality.get("sharpness")
    yaw = quality.get("yaw")
    return (
        0.0 if size is None else _log_shortfall(size, SIZE_FULL, SIZE_NONE),
        0.0 if sharp is None else _log_shortfall(sharp, SHARP_FULL, SHARP_NONE),
        0.0 if yaw is None else min(abs(yaw) / YAW_NONE, 1.0),
    )


def margin(quality: Mapping[str, float], slopes: Sequence[float]) -> float:
    """How much more than the threshold a face of this quality needs to be named."""
    return sum(s * f for s, f in zip(slopes, shortfall(quality), strict=True))


# Gallery size (issue 23): a stranger is named when their best score over N people reaches the threshold,
# FPIR = 1 - (1 - FMR)^N ~ N * FMR. On lfw-dev's 958,112 stranger-person pairs (bench.gallery_size) the
# pair tail is exponential with scale GALLERY_BETA = 0.024 and FMR at the default 0.48 is
# 7.6e-6, so up to GALLERY_REFERENCE = 250 people FPIR stays under 0.2 % (the goal of 99.8 % of
# strangers rejected); beyond, holding it needs GALLERY_BETA * ln(N / GALLERY_REFERENCE) more. Smaller
# galleries keep the calibrated threshold (a floor, not a discount).
GALLERY_REFERENCE = 250
GALLERY_BETA = 0.024


def gallery_margin(people: int, beta: float = GALLERY_BETA, reference: int = GALLERY_REFERENCE) -> float:
    """How much the threshold rises for a gallery of ``people`` over one of ``reference`` people."""
    return beta * math.log(max(people, reference) / reference)


@dataclass(frozen=True)
class Cohort:
    """Cohort normalisation (issue 23): a face that resembles everyone needs more to be named.

    ``mean`` is the face's mean score against the centroids of every enrolled person but its best one. Shrunk
    towards ``reference`` (the strangers' average) as if ``prior`` more people had been scored, so a small
    gallery's noisy mean moves little, it raises the score needed by ``weight * n (mean - reference) / (n + prior)``
    (n: the other people). The three are fitted per embedder on calibration folds (``bench.calibration``) and
    declared in the model registry (``EmbedderSpec.cohort``); ``classifier.cohort_*`` override them; weight 0 is
    off.
    """

    weight: float = 0.0
    reference: float = 0.0
    prior: float = 10.0

    def margins(self, totals: np.ndarray, best: np.ndarray, people: int) -> np.ndarray:
        """The rise of the score needed per face, from each face's summed score over every enrolled person's
        centroid (``totals``) and its best one (``best``) in a gallery of ``people``."""
        others = people - 1
        if not self.weight or others < 1:
            return np.zeros(len(totals))
        mean = (totals - best) / others
        return self.weight * others * (mean - self.reference) / (others + self.prior)


def cohort_for(embedder: str, conf: ClassifierSettings | None = None) -> Cohort:
    """The cohort normalisation for ``embedder``: each of ``conf``'s ``cohort_*`` settings (default: the shipped
    settings) that is set, else the value fitted for the embedder in the model registry; an embedder without
    fitted values gets none (weight 0) unless ``conf`` sets ``cohort_weight``."""
    from facewire.models.registry import default_cohort  # lazy: the registry imports onnx

    conf = conf or ClassifierSettings()
    fitted = default_cohort(embedder)
    base = Cohort(fitted.weight, fitted.reference, fitted.prior) if fitted is not None else Cohort()
    return Cohort(
        base.weight if conf.cohort_weight is None else conf.cohort_weight,
        base.reference if conf.cohort_reference is None else conf.cohort_reference,
        base.prior if conf.cohort_prior is None else conf.cohort_prior,
    )
