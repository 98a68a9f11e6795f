"""How the chance of naming a stranger grows with the number of people enrolled, and the threshold rule for it.

A stranger is named when their best score over N enrolled people reaches the threshold:
FPIR = 1 - (1 - FMR)^N, FMR being the chance that one stranger-person pair reaches it. The tail of the
pair scores is close to exponential (FMR(t) = p_u exp(-(t - u) / beta) above a high quantile u), so
keeping FPIR fixed as N grows needs FMR ~ FPIR / N, i.e. a threshold ``beta * ln(N / N_ref)`` above the
default beyond the N_ref people at which the default's FPIR reaches its goal
(``classifier_service.quality.gallery_margin``).

Measured here on the pooled protocols: ``beta`` fitted on the pair scores of strangers and enrolled people,
and on random sub-galleries of N people the strangers named at the fixed default and at the rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.calibration import Rule, wilson
from bench.protocol_eval import Scored, cohort_features
from classifier_service.quality import GALLERY_REFERENCE, gallery_margin

TAIL_QUANTILE = 1e-3  # the tail fit starts where 1 pair in 1,000 scores higher
SIZES = (10, 20, 40, 80, 158)  # lfw-dev has 158 known people: larger galleries are extrapolated
DRAWS = 40


def pair_scores(scored: list[Scored]) -> np.ndarray:
    """Every (stranger probe, enrolled person) score, pooled over protocols (misses left out)."""
    values = np.concatenate([s.per_person[~s.known].ravel() for s in scored])
    return values[~np.isnan(values)]


def fit_tail(pairs: np.ndarray, quantile: float = TAIL_QUANTILE) -> dict[str, float]:
    """Exponential tail above the ``1 - quantile`` point u: FMR(t) = quantile * exp(-(t - u) / beta)."""
    u = float(np.quantile(pairs, 1 - quantile))
    excess = pairs[pairs > u] - u
    return {"u": u, "beta": float(excess.mean()), "pairs": len(pairs), "tail_pairs": len(excess)}


def sub_scored(scored: Scored, chosen: np.ndarray) -> Scored:
    """``scored`` as if only the people ``chosen`` (column indexes) were enrolled: known probes of the others
    are left out, strangers kept; best person, score and cohort features recomputed."""
    people = [scored.people[i] for i in chosen]
    keep = ~scored.known | np.isin(np.array(scored.truth), people)
    per_person = scored.per_person[keep][:, chosen]
    best = np.nan_to_num(per_person, nan=-np.inf).argmax(axis=1)
    scores = per_person[np.arange(len(per_person)), best]
    names = [people[b] if not np.isnan(v) else "" for b, v in zip(best, scores, strict=True)]
    truth = [t for t, k in zip(scored.truth, keep, strict=True) if k]
    return Scored(
        names,
        scores,
        scored.known[keep],
        np.array([n == t for n, t in zip(names, truth, strict=True)], dtype=bool),
        scored.unidentifiable[keep],
        scored.sizes[keep],
        scored.shortfall[keep],
        people,
        per_person,
        truth,
        cohort_features(per_person),
    )


def sub_galleries(scored: list[Scored], rule: Rule, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Per gallery size: strangers named and known named under ``rule`` (the shipped decision), at its
    threshold and at the size-aware rule (its threshold + ``gallery_margin``)."""
    people = scored[0].people
    rows = []
    for size in SIZES:
        if size > len(people):
            continue
        threshold, raised = rule.threshold, rule.threshold + gallery_margin(size)
        tally = {"strangers": 0, "named_fixed": 0, "named_rule": 0, "known": 0, "known_fixed": 0, "known_rule": 0}
        for _ in range(DRAWS if size < len(people) else 1):
            chosen = np.sort(rng.choice(len(people), size, replace=False))
            for s in (sub_scored(s, chosen) for s in scored):
                adjusted = np.nan_to_num(rule.adjusted(s), nan=-np.inf)
                strangers, right = ~s.known, s.known & s.correct
                tally["strangers"] += int(strangers.sum())
                tally["named_fixed"] += int((adjusted[strangers] >= threshold).sum())
                tally["named_rule"] += int((adjusted[strangers] >= raised).sum())
                tally["known"] += int(s.known.sum())
                tally["known_fixed"] += int((right & (adjusted >= threshold)).sum())
                tally["known_rule"] += int((right & (adjusted >= raised)).sum())
        rows.append(
            {
                "people": size,
                "rule_threshold": raised,
                "strangers_named_fixed": wilson(tally["named_fixed"], tally["strangers"]),
                "strangers_named_rule": wilson(tally["named_rule"], tally["strangers"]),
                "known_named_fixed": wilson(tally["known_fixed"], tally["known"]),
                "known_named_rule": wilson(tally["known_rule"], tally["known"]),
                "counts": tally,
            }
        )
    return rows


def run(scored: list[Scored], rule: Rule, seed: int = 23) -> dict[str, Any]:
    """The tail fit, the rule's thresholds up to 100k people and the sub-gallery measurement of the shipped
    decision ``rule``."""
    threshold = rule.threshold
    pairs = pair_scores(scored)
    tail = fit_tail(pairs)
    predicted = {
        n: {"rule_threshold": threshold + gallery_margin(n), "fmr_at_default": _fmr(tail, threshold)}
        for n in (10, 100, 1_000, 10_000, 100_000)
    }
    return {
        "reference_people": GALLERY_REFERENCE,
        "tail": tail,
        "rule": predicted,
        "sub_galleries": sub_galleries(scored, rule, np.random.default_rng(seed)),
    }


def _fmr(tail: dict[str, float], t: float) -> float:
    return float(TAIL_QUANTILE * np.exp(-(t - tail["u"]) / tail["beta"]))
