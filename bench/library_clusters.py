"""Clustering quality of ``facewire scan --cluster`` on a labelled face set (pairwise and BCubed P/R/F).

Every photo's largest face is embedded with the default embedder (cached), the
faces are clustered exactly as ``scan --cluster`` clusters them, and the
clusters are scored against the people's names. People with one photo (the
unknowns of lfw-dev) are included: they should stay noise or alone.

    python -m bench.library_clusters [--dataset ../shared/data/lfw-dev]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.accuracy import DEFAULT_DATASET, embed_all, scan_dataset
from classifier_service.library_clusters import NOISE, bcubed_scores, cluster_faces, pairwise_scores
from facewire.config import ModelSettings
from facewire.faces import create_analyzer
from facewire.gallery_folder import EmbeddingCache
from facewire.models.registry import default_threshold


def evaluate(dataset: Path) -> dict[str, object]:
    photos = scan_dataset(dataset)
    settings = ModelSettings()
    threshold = default_threshold(settings.embedder)
    analyzer = create_analyzer(settings, det_threshold=0.6, min_face=20)
    cache = EmbeddingCache(settings.cache_dir / "bench" / "embeddings.sqlite")
    try:
        vectors = embed_all(photos, analyzer, cache)
    finally:
        cache.close()
    found = [(p.person, v) for p in photos if (v := vectors[p.sha256]) is not None]
    truth = [person for person, _ in found]
    matrix = np.stack([v / np.linalg.norm(v) for _, v in found]).astype(np.float32)
    runs = []
    for size, check in ((2, True), (2, False), (3, True)):  # the shipped setting first, then the ablations
        started = time.perf_counter()
        labels = cluster_faces(matrix, threshold, min_cluster_size=size, check_centroid=check)
        seconds = time.perf_counter() - started
        pairwise, bcubed = pairwise_scores(truth, labels.tolist()), bcubed_scores(truth, labels.tolist())
        runs.append(
            {
                "min_cluster_size": size,
                "centroid_check": check,
                "clusters": len(set(labels.tolist()) - {NOISE}),
                "noise_faces": int((labels == NOISE).sum()),
                "seconds": round(seconds, 2),
                "pairwise": {k: round(v, 4) for k, v in vars(pairwise).items()},
                "bcubed": {k: round(v, 4) for k, v in vars(bcubed).items()},
            }
        )
    return {
        "dataset": str(dataset),
        "faces": len(found),
        "people": len(set(truth)),
        "people_with_2_or_more": sum(1 for p in set(truth) if truth.count(p) >= 2),
        "join_cosine": threshold,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=None)
    args = parser.parse_args()
    dataset = args.dataset or DEFAULT_DATASET
    print(json.dumps(evaluate(dataset), indent=2))


if __name__ == "__main__":
    main()
