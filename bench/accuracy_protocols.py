"""``facewire bench accuracy --protocol ...``: facewire and the face_recognition peer side by side per protocol.

For every protocol (``bench.protocols``) both systems enrol the same clean photos and judge the same
degraded probes. Reported per protocol: detection misses, rank-1 (misses wrong), TAR at FAR 1e-2 and
1e-3, known correct / unknown rejected at each system's shipped default (facewire: the model's
calibrated registry default; the peer: tolerance 0.6). Then the cross-half calibration of facewire's
threshold (``bench.calibration``) and the ablation of the decision techniques (``bench.protocol_eval``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from bench import enrol_cost, gallery_size, track_sim
from bench import peer_face_recognition as peer
from bench.accuracy import Photo, dataset_hash, scan_dataset
from bench.calibration import CohortPrior, Rule, ablation, cross_half, offset_check, split_check
from bench.protocol_embed import Embedded
from bench.protocol_eval import Decision, Scored, score_probes, summarise
from bench.protocol_systems import (
    BENCH_MIN_FACE,
    System,
    embed_for,
    enrolled_and_probes,
    facewire_system,
    peer_system,
)
from bench.protocol_views import VIEW_SIZES
from bench.protocols import ALL, SMALL, Protocol
from classifier_service.quality import cohort_for, gallery_margin
from facewire.config import ClassifierSettings, ModelSettings

# The targets: protocol name -> {metric: minimum}.
TARGETS: dict[str, dict[str, float]] = {
    "enrol5-clean": {
        "rank1": 0.999,
        "tar_at_far_0.001": 0.995,
        "known_correct_at_threshold": 0.995,
        "unknown_rejected_at_threshold": 0.995,
    },
    "enrol1-clean": {"rank1": 0.997, "tar_at_far_0.001": 0.985},
    "enrol5-s0.35": {"tar_at_far_0.001": 0.99},
    "enrol1-s0.35": {"tar_at_far_0.001": 0.95},
    "enrol5-s0.22": {"rank1": 0.985},
}

# What the classifier ships (classifier_service.matcher: centroid scoring, classifier.quality_slopes,
# classifier.cohort_weight); the default threshold is calibrated for it.
SHIPPED = Decision(centroid=True, quality=True)  # cohort normalisation is measured, not shipped: docs/accuracy.md

# Earlier decisions (nearest photo, test-time flip, person norm, reject < 20 px) are in docs/accuracy.md;
# the ablation now measures issue 23's levers, each alone on top of centroid scoring, then together.
DECISIONS = [
    Decision(centroid=True),
    Decision(centroid=True, gallery_flip=True),
    Decision(centroid=True, views="pooled"),
    Decision(centroid=True, views="matched"),
    Decision(centroid=True, quality=True),
    Decision(centroid=True, gallery_flip=True, quality=True),
    Decision(centroid=True, gallery_flip=True, views="pooled"),
    Decision(centroid=True, gallery_flip=True, views="pooled", quality=True),
    Decision(centroid=True, quality=True, two_sided=True),
    Decision(centroid=True, cohort="mean"),
    Decision(centroid=True, cohort="meanstd"),
    Decision(centroid=True, quality=True, cohort="mean"),
]


def scorer(
    system: System, protocols: list[Protocol], embedded: dict[str, dict[str, Embedded]], max_probes: int | None
) -> Any:
    """photos, decision -> one Scored per protocol (gallery and probes drawn from ``photos`` only)."""

    def score(photos: list[Photo], decision: Decision) -> list[Scored]:
        out = []
        for protocol in protocols:
            enrolled, probes = enrolled_and_probes(photos, protocol.enroll_per_person, max_probes)
            out.append(
                score_probes(
                    enrolled,
                    probes,
                    embedded["clean"],
                    embedded[protocol.degradation],
                    system.similarity,
                    decision,
                    embedded.get("views"),
                )
            )
        return out

    return score


def shipped_rule(system: System, decision: Decision) -> Rule:
    """The decision the classifier makes with its shipped settings: the default threshold, the quality slopes
    and the cohort term when ``decision`` uses them (the peer: its threshold alone)."""
    if not system.name.startswith("facewire"):
        return Rule(system.default_threshold)
    conf = ClassifierSettings()
    cohort = cohort_for(system.model, conf)
    return Rule(
        system.default_threshold,
        conf.quality_slopes if decision.quality else (0.0, 0.0, 0.0),
        (cohort.weight, 0.0, 0.0) if decision.cohort == "mean" else (0.0, 0.0, 0.0),
        CohortPrior(cohort.reference, cohort.prior),
    )


def as_shipped(scored: Scored, system: System, decision: Decision) -> tuple[Scored, float]:
    """The scores less the shipped rule's quality margin and cohort term, and the threshold the classifier
    would use for this gallery (facewire: raised for its number of people)."""
    rule = shipped_rule(system, decision)
    if not system.name.startswith("facewire"):
        return scored, rule.threshold
    return replace(scored, scores=rule.adjusted(scored)), rule.threshold + gallery_margin(len(scored.people))


def evaluate(
    system: System,
    photos: list[Photo],
    protocols: list[Protocol],
    cache_dir: Path,
    decision: Decision,
    max_probes: int | None = None,
) -> dict[str, Any]:
    """Per protocol numbers of one system at its default threshold."""
    embedded = embed_for(system, photos, protocols, cache_dir, max_probes)
    scored = scorer(system, protocols, embedded, max_probes)(photos, decision)
    return {
        "system": system.name,
        "model": system.model,
        "default_threshold": system.default_threshold,
        "threshold_rule": system.threshold_note,
        "decision": decision.name,
        "protocols": {
            p.name: summarise(*as_shipped(s, system, decision)) for p, s in zip(protocols, scored, strict=True)
        },
        "_score": scorer(system, protocols, embedded, max_probes),
        "_scored": scored,
        "_embedded": embedded,
    }


def run(
    dataset: Path,
    protocols: list[Protocol],
    model: str,
    with_peer: bool = True,
    limit_people: int | None = None,
    cache_dir: Path | None = None,
    decision: Decision | None = None,
    max_probes: int | None = None,
) -> dict[str, Any]:
    """Both systems on every protocol, the cross-half calibration and the ablation (facewire)."""
    photos = scan_dataset(dataset, limit_people)
    cache = cache_dir or ModelSettings().cache_dir
    names = [p.name for p in protocols]
    chosen = decision or SHIPPED
    system = facewire_system(model, cache)
    facewire = evaluate(system, photos, protocols, cache, chosen, max_probes)
    score, embedded, scored = facewire.pop("_score"), facewire.pop("_embedded"), facewire.pop("_scored")
    degradations = {p.degradation for p in protocols}
    track_results = (
        {f"enrol{n}": track_sim.run(photos, embedded, facewire["default_threshold"], n, max_probes) for n in (1, 5)}
        if set(track_sim.TRACK_SCALES) <= degradations
        else None
    )
    systems = [facewire]
    reason = peer.missing_reason() if with_peer else "not requested (--no-peer)"
    if reason is None:
        found = evaluate(peer_system(), photos, protocols, cache, Decision(), max_probes)
        found.pop("_score"), found.pop("_embedded"), found.pop("_scored")
        systems.append(found)
    else:
        click.echo(f"peer skipped: {reason}", err=True)
    return {
        "dataset": {
            "path": str(dataset),
            "files": len(photos),
            "known_people": len({p.person for p in photos if p.known}),
            "unknown_people": len({p.person for p in photos if not p.known}),
            "content_sha256": dataset_hash(dataset, photos),
            "limit_people": limit_people,
            "max_probes_per_person": max_probes,
        },
        "protocols": [{"name": p.name, **p.__dict__} for p in protocols],
        "bench_min_face": BENCH_MIN_FACE,
        "peer_skipped": reason,
        "systems": systems,
        "targets": TARGETS,
        "calibration": cross_half(photos, score, chosen, names),
        "ablation": ablation(photos, score, DECISIONS, names),
        "splits": split_check(photos, score, [DECISIONS[0], chosen], names),
        "matched_strangers": offset_check(photos, score, [DECISIONS[0], chosen]),
        "tracks": track_results,
        "gallery_size": gallery_size.run(scored, shipped_rule(system, chosen)),
        "enrol_cost": enrol_cost.run(model, VIEW_SIZES),
    }


def parse_protocols(
    protocol: str | None, enroll: int | None, scale: float | None, blur: int | None, quality: int | None
) -> list[Protocol]:
    """``--protocol all`` (the issue's list) or one protocol built from the individual options."""
    if protocol == "all":
        return list(ALL)
    if protocol == "small":
        return list(SMALL)
    return [Protocol(enroll or 5, scale or 1.0, blur or 0, quality or 0)]
