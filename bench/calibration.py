"""Calibrating a default threshold on one half of the people and testing it on the other half.

Procedure (documented in docs/accuracy.md):

1. The people are split in two disjoint halves by the SHA-256 of their name (known and unknown
   people alike, so no person is in both halves): ``A`` and ``B``.
2. Calibration on a half: its known people are enrolled, its probes (its known people's other photos
   and its unknown people's photos) go through every protocol of the run; the impostor scores (best
   score of each unknown probe) of all protocols are pooled, and the threshold is the lowest one at
   which at most a ``far`` share of them would be accepted (``metrics.threshold_at_far``).
3. Test: that threshold is applied to the *other* half (its own gallery and probes): known correct
   and unknown rejected are reported per protocol, in both directions (A->B, B->A).
4. The shipped default (``EmbedderSpec.default_threshold``) is the mean of the two halves'
   thresholds, rounded up to 0.01. The test halves never choose anything.

With the quality-aware decision a fold also fits the slopes of the threshold's rise with the probe's
quality shortfall (``fit_slopes``) before its threshold. The ablation (``ablation``) is cross-validated
the same way: every number in it comes from the half that chose nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import metrics
from bench.accuracy import Photo
from bench.protocol_eval import Decision, Scored, summarise

CALIBRATION_FAR = 1e-3

ScoreFn = Callable[[list[Photo], Decision], list[Scored]]  # photos of a half -> one Scored per protocol


def half_of(person: str, salt: str = "") -> str:
    """``A`` or ``B``: a fixed split of people by the SHA-256 of their name (``salt``: another fixed split)."""
    return "A" if hashlib.sha256((salt + person).encode()).digest()[0] % 2 == 0 else "B"


def halves(photos: list[Photo], salt: str = "") -> dict[str, list[Photo]]:
    """The photos of each half's people."""
    out: dict[str, list[Photo]] = {"A": [], "B": []}
    for photo in photos:
        out[half_of(photo.person, salt)].append(photo)
    return out


def calibrate(impostors: list[np.ndarray], far: float = CALIBRATION_FAR) -> float:
    """The threshold at ``far`` over the pooled impostor scores of several protocols."""
    pooled = np.concatenate(impostors) if impostors else np.zeros(0)
    return metrics.threshold_at_far(pooled, far)


def shipped_default(thresholds: list[float]) -> float:
    """The mean of the halves' calibrated thresholds, rounded up to 0.01."""
    return math.ceil(float(np.mean(thresholds)) * 100 - 1e-9) / 100


COHORT_COLUMNS = {"": [], "mean": [0], "meanstd": [0, 1]}  # of Scored.cohort


@dataclass(frozen=True)
class CohortPrior:
    """How a probe's mean score against the other people is read: shrunk towards ``reference`` (the strangers'
    average) as if ``prior`` more people had scored it, so a small gallery's noisy mean moves the score little."""

    reference: float = 0.0
    prior: float = 0.0


def fit_prior(scored: list[Scored]) -> CohortPrior:
    """The strangers' average cohort mean, and the prior weight (in people) that makes the shrunk mean the best
    linear estimate of a probe's own level: within-probe variance / between-probe variance of the mean."""
    rows = np.concatenate([s.cohort[~s.known & ~np.isnan(s.scores)] for s in scored])
    others = len(scored[0].people) - 1
    if others < 2 or len(rows) < 2:  # no cohort to speak of (a tiny --limit-people run)
        return CohortPrior()
    within = float(np.mean(rows[:, 1] ** 2))
    between = float(np.var(rows[:, 0])) - within / others
    return CohortPrior(round(float(rows[:, 0].mean()), 4), round(within / between, 1) if between > 0 else 1e9)


def cohort_terms(scored: Scored, prior: CohortPrior) -> np.ndarray:
    """(probes, 3) the cohort features of ``scored`` with the mean shrunk and centred:
    n (mean - reference) / (n + prior), n the people other than the best."""
    others = max(len(scored.people) - 1, 0)
    out = scored.cohort.copy()
    out[:, 0] = others * (out[:, 0] - prior.reference) / (others + prior.prior) if others else 0.0
    return out


@dataclass(frozen=True)
class Rule:
    """A fitted decision rule: name when score - slopes . shortfall - cohort . cohort terms >= threshold."""

    threshold: float
    slopes: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cohort: tuple[float, float, float] = (0.0, 0.0, 0.0)  # weights of (mean, std, max) of the other people
    prior: CohortPrior = CohortPrior()

    def adjusted(self, scored: Scored) -> np.ndarray:
        """The probes' scores less their quality margin and cohort term (nan stays nan)."""
        quality = scored.shortfall @ np.array(self.slopes)
        return scored.scores - quality - cohort_terms(scored, self.prior) @ np.array(self.cohort)


def fit_weights(
    scored: list[Scored], decision: Decision, prior: CohortPrior
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(quality slopes, cohort weights): how much the strangers' best scores rise per unit of (size, sharpness,
    pose) shortfall and of the cohort terms the decision uses, one least-squares fit of
    score = c + slopes . shortfall + weights . cohort over the pooled stranger probes; the quality slopes
    are kept >= 0 unless the decision is two-sided."""
    columns = COHORT_COLUMNS[decision.cohort]
    if not decision.quality and not columns:
        return (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    values = np.concatenate([s.scores[~s.known] for s in scored])
    quality = np.concatenate([s.shortfall[~s.known] for s in scored])
    cohort = np.concatenate([cohort_terms(s, prior)[~s.known] for s in scored])[:, columns]
    features = np.column_stack([quality, cohort]) if decision.quality else cohort
    constrained = np.array(
        [decision.quality and not decision.two_sided] * (3 if decision.quality else 0) + [False] * len(columns),
        dtype=bool,
    )
    keep = ~np.isnan(values)
    coef = constrained_fit(features[keep], values[keep], constrained)
    slopes = coef[:3] if decision.quality else np.zeros(3)
    weights = np.zeros(3)
    weights[columns] = coef[3:] if decision.quality else coef
    return _rounded(slopes), _rounded(weights)


def _rounded(values: np.ndarray) -> tuple[float, float, float]:
    return (round(float(values[0]), 4), round(float(values[1]), 4), round(float(values[2]), 4))


def fit_slopes(scored: list[Scored]) -> tuple[float, float, float]:
    """How much the strangers' best scores rise per unit of (size, sharpness, pose) shortfall: the
    non-negative least-squares fit of score = c + slopes . shortfall over the pooled stranger probes."""
    return fit_weights(scored, Decision(centroid=True, quality=True), CohortPrior())[0]


def nonnegative_fit(features: np.ndarray, values: np.ndarray) -> tuple[float, float, float]:
    """Least squares of values = c + slopes . features with every slope >= 0."""
    return _rounded(constrained_fit(features, values, np.ones(features.shape[1], dtype=bool)))


def constrained_fit(features: np.ndarray, values: np.ndarray, constrained: np.ndarray) -> np.ndarray:
    """Least squares of values = c + slopes . features with the ``constrained`` slopes >= 0 (exact: the best
    over the subsets of constrained features whose fit has none of them negative)."""
    best, best_error = np.zeros(features.shape[1]), np.inf
    for subset in itertools.product((False, True), repeat=int(constrained.sum())):
        chosen = np.ones(features.shape[1], dtype=bool)
        chosen[constrained] = subset
        design = np.column_stack([np.ones(len(values)), features[:, chosen]])
        coef = np.linalg.lstsq(design, values, rcond=None)[0]
        if (coef[1:][constrained[chosen]] < 0).any():
            continue
        error = float(np.sum((design @ coef - values) ** 2))
        if error < best_error:
            best_error, best = error, np.zeros(features.shape[1])
            best[chosen] = coef[1:]
    return best


def fit_rule(scored: list[Scored], decision: Decision, far: float = CALIBRATION_FAR) -> Rule:
    """The rule fitted on one fold: the quality slopes (when the decision uses them), then the threshold
    at ``far`` over the pooled strangers' adjusted scores."""
    prior = fit_prior(scored) if decision.cohort else CohortPrior()
    slopes, weights = fit_weights(scored, decision, prior)
    rule = Rule(0.0, slopes, weights, prior)
    impostors = [np.where(s.unidentifiable, np.nan, rule.adjusted(s))[~s.known] for s in scored]
    return Rule(calibrate([i[~np.isnan(i)] for i in impostors], far), slopes, weights, prior)


def counts(scored: Scored, rule: Rule) -> dict[str, int]:
    """Known probes named right, strangers rejected, and how many of each, under ``rule``."""
    adjusted = np.nan_to_num(np.where(scored.unidentifiable, np.nan, rule.adjusted(scored)), nan=-np.inf)
    named = adjusted >= rule.threshold
    return {
        "known": int(scored.known.sum()),
        "known_named": int((named & scored.correct & scored.known).sum()),
        "strangers": int((~scored.known).sum()),
        "strangers_rejected": int((~named & ~scored.known).sum()),
    }


def add(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {k: total.get(k, 0) + v for k, v in more.items()}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """The rate and its 95 % Wilson score interval."""
    if n == 0:
        return (0.0, 0.0, 0.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (p, max(0.0, centre - half), min(1.0, centre + half))


def rates(total: dict[str, int]) -> dict[str, Any]:
    """Counts with the known-named and strangers-rejected rates and their intervals."""
    return {
        **total,
        "known_named": wilson(total["known_named"], total["known"]),
        "strangers_rejected": wilson(total["strangers_rejected"], total["strangers"]),
        "counts": total,
    }


def cross_half(photos: list[Photo], score: ScoreFn, decision: Decision, names: list[str]) -> dict[str, Any]:
    """Calibrate on each half, test on the other; per protocol (``names``) test-half numbers."""
    split = halves(photos)
    scored = {half: score(group, decision) for half, group in split.items()}
    rules = {half: fit_rule(scored[half], decision) for half in split}
    directions = {}
    for cal, test in (("A", "B"), ("B", "A")):
        directions[f"{cal}->{test}"] = {
            "threshold": rules[cal].threshold,
            "slopes": rules[cal].slopes,
            "cohort": (rules[cal].cohort[0], rules[cal].prior.reference, rules[cal].prior.prior),
            "protocols": {
                n: summarise(s, rules[cal].threshold) | rates(counts(s, rules[cal]))
                for n, s in zip(names, scored[test], strict=True)
            },
        }
    return {
        "far": CALIBRATION_FAR,
        "people": {h: len({p.person for p in g}) for h, g in split.items()},
        "thresholds": {h: r.threshold for h, r in rules.items()},
        "slopes": {h: r.slopes for h, r in rules.items()},
        "shipped": shipped_default([r.threshold for r in rules.values()]),
        "shipped_slopes": tuple(round(float(np.mean([r.slopes[i] for r in rules.values()])), 3) for i in range(3)),
        "shipped_cohort": {
            "weight": round(float(np.mean([r.cohort[0] for r in rules.values()])), 2),
            "reference": round(float(np.mean([r.prior.reference for r in rules.values()])), 3),
            "prior": round(float(np.mean([r.prior.prior for r in rules.values()])), 1),
        },
        "directions": directions,
    }


def ablation(
    photos: list[Photo], score: ScoreFn, decisions: list[Decision], names: list[str], salt: str = ""
) -> list[dict[str, Any]]:
    """Per decision, cross-validated over the two halves (every stranger is calibrated on once and tested
    on once): the rule is fitted on one half's pooled protocols and tested on the other half; test counts
    are pooled over both directions, overall and per protocol, with 95 % intervals."""
    rows: list[dict[str, Any]] = []
    split = halves(photos, salt)
    for decision in decisions:
        scored = {half: score(group, decision) for half, group in split.items()}
        rules = {half: fit_rule(scored[half], decision) for half in split}
        pooled: dict[str, int] = {}
        per_protocol: dict[str, dict[str, int]] = {n: {} for n in names}
        outcomes = []
        for cal, test in (("A", "B"), ("B", "A")):
            for name, s in zip(names, scored[test], strict=True):
                found = counts(s, rules[cal])
                pooled = add(pooled, found)
                per_protocol[name] = add(per_protocol[name], found)
                outcomes.append(right_answers(s, rules[cal]))
        answers = np.concatenate(outcomes)
        first = answers if not rows else rows[0]["_answers"]
        rank1 = [summarise(s, 0.0)["rank1"] for half in split for s in scored[half]]
        rows.append(
            {
                "decision": decision.name,
                "rank1": float(np.mean(rank1)),
                "thresholds": {h: r.threshold for h, r in rules.items()},
                "slopes": {h: r.slopes for h, r in rules.items()},
                "cohort": {h: r.cohort for h, r in rules.items()},
                "cohort_prior": {h: (r.prior.reference, r.prior.prior) for h, r in rules.items()},
                "pooled": rates(pooled),
                "counts_named": pooled["strangers"] - pooled["strangers_rejected"],
                "protocols": {n: rates(c) for n, c in per_protocol.items()},
                "vs_first": {
                    "right_gained": int((answers & ~first).sum()),
                    "right_lost": int((~answers & first).sum()),
                },
                "_answers": answers,
            }
        )
    for row in rows:
        del row["_answers"]
    return rows


def right_answers(scored: Scored, rule: Rule) -> np.ndarray:
    """Per probe, whether ``rule`` answers it right: a known probe named as its person, a stranger rejected
    (paired between decisions: the same probes in the same order)."""
    adjusted = np.nan_to_num(np.where(scored.unidentifiable, np.nan, rule.adjusted(scored)), nan=-np.inf)
    named = adjusted >= rule.threshold
    return np.where(scored.known, named & scored.correct, ~named)


SPLIT_SALTS = ("s1", "s2", "s3", "s4", "s5")  # five more fixed splits of the people, for the robustness check


def split_check(
    photos: list[Photo],
    score: ScoreFn,
    decisions: list[Decision],
    names: list[str],
    salts: tuple[str, ...] = SPLIT_SALTS,
) -> list[dict[str, Any]]:
    """The first decisions' cross-validated comparison repeated on other splits of the people: per split and
    decision, known named and strangers named under the fitted rules, the paired gained / lost against the
    first decision, and TAR at a pooled FAR of 1e-3 of the test halves' own strangers (the rules compared
    at the same share of strangers named, whatever their fitted thresholds)."""
    out = []
    for salt in salts:
        if any(not any(p.known for p in group) for group in halves(photos, salt).values()):
            continue  # a half with nobody enrolled (a tiny --limit-people run)
        rows = ablation(photos, score, decisions, names, salt)
        matched = [pooled_tar(photos, score, decision, salt) for decision in decisions]
        out.append(
            {
                "split": salt,
                "decisions": [
                    {
                        "decision": row["decision"],
                        "known_named": row["pooled"]["known_named"],
                        "strangers_named": row["counts_named"],
                        "strangers": row["pooled"]["counts"]["strangers"],
                        "vs_first": row["vs_first"],
                        "tar_at_pooled_far": tar,
                    }
                    for row, tar in zip(rows, matched, strict=True)
                ],
            }
        )
    return out


def pooled_tar(
    photos: list[Photo], score: ScoreFn, decision: Decision, salt: str, far: float = CALIBRATION_FAR
) -> float:
    """Known probes named right over both test halves, at the threshold that names ``far`` of the test halves'
    strangers pooled over the protocols (each half's scores adjusted by the rule fitted on the other)."""
    split = halves(photos, salt)
    scored = {half: score(group, decision) for half, group in split.items()}
    rules = {half: fit_rule(scored[half], decision) for half in split}
    right, strangers = [], []
    for cal, test in (("A", "B"), ("B", "A")):
        for s in scored[test]:
            adjusted = np.nan_to_num(rules[cal].adjusted(s), nan=-np.inf)
            right.append(np.where(s.correct[s.known], adjusted[s.known], -np.inf))
            strangers.append(adjusted[~s.known])
    threshold = metrics.threshold_at_far(np.concatenate(strangers), far)
    return float(np.mean(np.concatenate(right) >= threshold))


OFFSETS = tuple(round(0.001 * i, 3) for i in range(31))  # raises of the fitted threshold tried by offset_check


def offset_check(
    photos: list[Photo],
    score: ScoreFn,
    decisions: list[Decision],
    salts: tuple[str, ...] = ("", *SPLIT_SALTS),
    offsets: tuple[float, ...] = OFFSETS,
) -> dict[str, Any]:
    """How far the last decision's fitted threshold must rise for it to name no more strangers than the first
    decision at its own fitted threshold, pooled over the test halves of every split (``salts``), each half
    judged by the rule fitted on the other. Per offset: the last decision's known named (Wilson interval),
    strangers named and the paired right answers gained / lost against the first decision."""
    parts: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]] = {0: [], 1: []}
    thresholds: dict[str, list[float]] = {}
    for salt in salts:
        split = halves(photos, salt)
        if any(not any(p.known for p in group) for group in split.values()):
            continue
        for slot, decision in ((0, decisions[0]), (1, decisions[-1])):
            scored = {half: score(group, decision) for half, group in split.items()}
            rules = {half: fit_rule(scored[half], decision) for half in split}
            if slot:
                thresholds[salt or "main"] = [rules["A"].threshold, rules["B"].threshold]
            for cal, test in (("A", "B"), ("B", "A")):
                for s in scored[test]:
                    adjusted = np.nan_to_num(np.where(s.unidentifiable, np.nan, rules[cal].adjusted(s)), nan=-np.inf)
                    parts[slot].append((adjusted, s.known, s.correct, rules[cal].threshold))
    known = np.concatenate([p[1] for p in parts[0]])

    def right(slot: int, offset: float) -> np.ndarray:
        named = np.concatenate([a >= t + offset for a, _, _, t in parts[slot]])
        correct = np.concatenate([c for _, _, c, _ in parts[slot]])
        return np.where(known, named & correct, ~named)

    first = right(0, 0.0)
    first_named = int((~first & ~known).sum())

    def row(slot: int, offset: float) -> dict[str, Any]:
        answers = right(slot, offset)
        return {
            "offset": offset,
            "known_named": wilson(int((answers & known).sum()), int(known.sum())),
            "strangers_named": int((~answers & ~known).sum()),
            "gained": int((answers & ~first).sum()),
            "lost": int((~answers & first).sum()),
        }

    rows = [row(1, offset) for offset in offsets]
    return {
        "splits": list(thresholds),
        "decisions": [decisions[0].name, decisions[-1].name],
        "first": {**row(0, 0.0), "strangers": int((~known).sum())},
        "first_offsets": [row(0, offset) for offset in offsets],
        "thresholds": thresholds,
        "offsets": rows,
        "matched": next((r for r in rows if r["strangers_named"] <= first_named), None),
    }
