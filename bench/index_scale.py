"""Index by gallery size on realistic galleries: real lfw-dev SFace embeddings among generated distractors.

Each gallery holds the enrolled photos of lfw-dev's known people and distractors from
``bench.face_distractors`` (3 photos per generated identity) up to N rows. Probes: the other photos
of the known people and every stranger of lfw-dev. For each N, in one process, one FAISS thread
(the classifier's default), batches of 64 probes:

- exact search (flat) and the index ``classifier_service.index_choice`` chooses: build time, bytes,
  ms per query (batch time / 64, p50 and p99 over batches), recall@1 against exact (all probes,
  known people's probes, strangers), time to add 1,000 rows and to remove 100 (copy-on-write);
- at the largest N also the index whose codebooks were trained at the flat limit and grown by adds;
- identification through the real Matcher (centroid scoring): strangers named and known probes named
  right (top candidate and score >= threshold) at three thresholds: the Matcher's own (the calibrated
  threshold plus its rise with the people enrolled, issue 23), the calibrated one alone, and a
  size-aware one for a 1 % false-positive identification rate (FPIR = 1 - (1 - FMR)^people, the FMR
  read off a normal fit of real strangers' scores against distractor identities). That last one is an
  independent check with another tail model and a looser goal, not a second rule: the product's
  threshold is the Matcher's (``classifier_service.quality.gallery_margin``, FPIR 0.2 %);
  docs/accuracy.md compares the two.
"""

from __future__ import annotations

import time
from statistics import NormalDist
from typing import Any

import click
import faiss
import numpy as np

from bench import face_distractors
from bench.common import table, write_json
from bench.report import publish
from classifier_service import index_choice
from classifier_service.matcher import Matcher
from facewire.models.registry import default_threshold
from facewire.progress import progress_bar

SIZES = (1_000, 10_000, 60_000, 100_000, 300_000, 1_000_000)
QUICK_SIZES = (10_000, 60_000)
BATCH = 64
TOP_K = 5
FPIR = 0.01
KINDS = ("matcher", "calibrated", "size_aware")  # the decision thresholds compared


def gallery(real: face_distractors.RealFaces, pool: np.ndarray, size: int) -> tuple[np.ndarray, list[str]]:
    """The enrolled real photos then ``size - len(enrolled)`` distractors (at least the real ones)."""
    extra = max(0, size - len(real.enrolled))
    labels = real.enrolled_people + [f"d{i // face_distractors.PHOTOS_PER_DISTRACTOR}" for i in range(extra)]
    return np.vstack([real.enrolled, np.asarray(pool[:extra])]).astype(np.float32), labels


def timed_search(index: faiss.Index, probes: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Top-k ids of every probe searched in batches, and ms per query (p50, p99 over batches)."""
    ids, per_query = [], []
    for start in range(0, len(probes), BATCH):
        batch = probes[start : start + BATCH]
        began = time.perf_counter()
        ids.append(index.search(batch, TOP_K)[1])
        per_query.append(1000 * (time.perf_counter() - began) / len(batch))
    return np.vstack(ids), {"ms_p50": float(np.median(per_query)), "ms_p99": float(np.percentile(per_query, 99))}


def recall(ids: np.ndarray, exact: np.ndarray, known: int) -> dict[str, float]:
    hits = ids[:, 0] == exact[:, 0]
    return {"all": float(hits.mean()), "known": float(hits[:known].mean()), "strangers": float(hits[known:].mean())}


def changes(index: faiss.Index, rows: np.ndarray) -> dict[str, float]:
    """Seconds to add 1,000 rows and to remove 100 rows (each giving a new index, as the gallery does)."""
    began = time.perf_counter()
    index_choice.added(index, rows[:1000])
    add_s = time.perf_counter() - began
    began = time.perf_counter()
    index_choice.removed(index, np.arange(0, int(index.ntotal), max(1, int(index.ntotal) // 100))[:100])
    return {"add_1000_s": add_s, "remove_100_s": time.perf_counter() - began}


def size_aware_threshold(scores: np.ndarray, people: int, fpir: float = FPIR) -> float:
    """The score a stranger exceeds against one of ``people`` identities with probability ``fpir``."""
    fmr = 1.0 - (1.0 - fpir) ** (1.0 / max(people, 1))
    return float(scores.mean() + scores.std() * NormalDist().inv_cdf(1.0 - fmr))


def identification(
    real: face_distractors.RealFaces, index: faiss.Index, vectors: np.ndarray, labels: list[str], impostor: np.ndarray
) -> dict[str, Any]:
    """Strangers named and known probes named right: by the Matcher as it decides today (its threshold plus
    its own rise with the people enrolled), at the calibrated threshold, and at the size-aware threshold."""
    matcher = Matcher(vectors, labels, default_threshold(face_distractors.MODEL), TOP_K, index=index)
    people = len(set(labels))
    strangers, known = matcher.match(real.strangers), matcher.match(real.probes)
    out: dict[str, Any] = {"people": people, "strangers": len(real.strangers)}
    thresholds = {
        "matcher": matcher.needed,
        "calibrated": matcher.threshold,
        "size_aware": size_aware_threshold(impostor, people),
    }
    for name, threshold in thresholds.items():
        out[name] = {
            "threshold": threshold,
            "strangers_named": sum(m.candidates[0].score >= threshold for m in strangers),
            "known_named_right": float(
                np.mean(
                    [
                        m.candidates[0].name == person and m.candidates[0].score >= threshold
                        for m, person in zip(known, real.probe_people, strict=True)
                    ]
                )
            ),
        }
    return out


def impostor_scores(real: face_distractors.RealFaces, pool: np.ndarray) -> np.ndarray:
    """Real strangers against the (normalised mean) centres of 30,000 distractor identities."""
    per = face_distractors.PHOTOS_PER_DISTRACTOR
    rows = np.asarray(pool[: 30_000 * per]).reshape(30_000, per, -1).mean(axis=1)
    centres = face_distractors.unit(rows)
    return (real.strangers @ centres.T).ravel()


def measure(
    real: face_distractors.RealFaces, pool: np.ndarray, size: int, impostor: np.ndarray, largest: bool
) -> dict[str, Any]:
    vectors, labels = gallery(real, pool, size)
    probes = np.vstack([real.probes, real.strangers])
    flat = index_choice.build(vectors, index_choice.IndexPlan("flat"))
    exact, flat_ms = timed_search(flat, probes)
    del flat
    began = time.perf_counter()
    index = index_choice.build(vectors)
    build_s = time.perf_counter() - began
    ids, chosen_ms = timed_search(index, probes)
    plan = index_choice.plan_of(index)
    row: dict[str, Any] = {
        "rows": len(vectors),
        "plan": {"kind": plan.kind, "sub_quantizers": plan.sub_quantizers, "k_factor": plan.k_factor},
        "build_s": build_s,
        "bytes": int(faiss.serialize_index(index).nbytes),
        "flat": flat_ms,
        "chosen": chosen_ms,
        "recall_at_1": recall(ids, exact, len(real.probes)),
        "changes": changes(index, np.asarray(pool[-1000:])),
        "identification": identification(real, index, vectors, labels, impostor),
    }
    if plan.kind != "flat" and largest:
        row["grown"] = grown(vectors, probes, exact, len(real.probes))
    return row


def grown(vectors: np.ndarray, probes: np.ndarray, exact: np.ndarray, known: int) -> dict[str, Any]:
    """Codebooks trained on the first FLAT_MAX + 1 rows (the gallery's first compressed build), the rest added."""
    first = index_choice.FLAT_MAX + 1
    index = index_choice.build(vectors[:first])
    began = time.perf_counter()
    for start in range(first, len(vectors), 100_000):
        index.add(vectors[start : start + 100_000])
    ids, ms = timed_search(index, probes)
    return {"add_s": time.perf_counter() - began, **ms, "recall_at_1": recall(ids, exact, known)}


def run(sizes: tuple[int, ...]) -> dict[str, Any]:
    """Every size in turn; the dict written to bench/results/index_scale.json."""
    faiss.omp_set_num_threads(1)
    real = face_distractors.load_real()
    model = face_distractors.fit(real)
    pool = face_distractors.distractors(model, max(max(sizes), 31_000 * face_distractors.PHOTOS_PER_DISTRACTOR))
    impostor = impostor_scores(real, pool[-30_000 * face_distractors.PHOTOS_PER_DISTRACTOR :])
    rows = []
    with progress_bar("index by gallery size") as update:
        for done, size in enumerate(sizes, start=1):
            rows.append(measure(real, pool, size, impostor, size == max(sizes)))
            update(done, len(sizes))
    return {
        "distractor_check": face_distractors.check(real, model),
        "impostor": {"mean": float(impostor.mean()), "std": float(impostor.std()), "pairs": len(impostor)},
        "probes": {"known": len(real.probes), "strangers": len(real.strangers)},
        "sizes": rows,
    }


def body(data: dict[str, Any]) -> str:
    """The Markdown tables of the section."""
    speed = table(
        [
            "rows",
            "index",
            "build s",
            "MB",
            "flat ms/q p50 / p99",
            "chosen ms/q p50 / p99",
            "p99 vs flat",
            "recall@1 all / known / strangers",
            "add 1k s",
            "remove 100 s",
        ],
        [
            [
                f"{r['rows']:,}",
                r["plan"]["kind"]
                + (
                    f" (M {r['plan']['sub_quantizers']}, k_factor {r['plan']['k_factor']})"
                    if r["plan"]["k_factor"]
                    else ""
                ),
                f"{r['build_s']:.1f}",
                f"{r['bytes'] / 2**20:.0f}",
                f"{r['flat']['ms_p50']:.2f} / {r['flat']['ms_p99']:.2f}",
                f"{r['chosen']['ms_p50']:.2f} / {r['chosen']['ms_p99']:.2f}",
                f"{r['chosen']['ms_p99'] / r['flat']['ms_p99']:.3f}",
                " / ".join(f"{r['recall_at_1'][k]:.4f}" for k in ("all", "known", "strangers")),
                f"{r['changes']['add_1000_s']:.2f}",
                f"{r['changes']['remove_100_s']:.2f}",
            ]
            for r in data["sizes"]
        ],
    )
    ident = table(
        ["rows", "people"]
        + [f"{kind} {column}" for kind in KINDS for column in ("thr", "strangers named", "known right")],
        [
            [
                f"{r['rows']:,}",
                f"{r['identification']['people']:,}",
                *[
                    cell
                    for kind in KINDS
                    for cell in (
                        f"{r['identification'][kind]['threshold']:.3f}",
                        f"{r['identification'][kind]['strangers_named']} / {r['identification']['strangers']}",
                        f"{100 * r['identification'][kind]['known_named_right']:.1f} %",
                    )
                ],
            ]
            for r in data["sizes"]
        ],
    )
    check = data["distractor_check"]
    real_nn, fake_nn = check["nearest"]["real"], check["nearest"]["distractor"]
    lines = [
        speed,
        "",
        ident,
        "",
        f"Distractor check (held-out real strangers, {check['method']}): pair cosine mean/std real"
        f" {check['pairs']['real']['mean']:.3f}/{check['pairs']['real']['std']:.3f} vs distractor"
        f" {check['pairs']['distractor']['mean']:.3f}/{check['pairs']['distractor']['std']:.3f}"
        f" (KS {check['pairs_ks']:.3f});"
        f" nearest-neighbour cosine mean/p99 real {real_nn['mean']:.3f}/{real_nn['p99']:.3f} vs distractor"
        f" {fake_nn['mean']:.3f}/{fake_nn['p99']:.3f} (KS {check['nearest_ks']:.3f}); same-person mean real"
        f" {check['same_person_mean']['real']:.3f} vs distractor {check['same_person_mean']['distractor']:.3f}.",
    ]
    for r in data["sizes"]:
        if "grown" in r:
            g = r["grown"]
            lines.append(
                f"Grown at {r['rows']:,} rows (codebooks trained at {index_choice.FLAT_MAX + 1:,}, the rest added in"
                f" {g['add_s']:.1f} s): ms/q p99 {g['ms_p99']:.2f}, recall@1 "
                + " / ".join(f"{g['recall_at_1'][k]:.4f}" for k in ("all", "known", "strangers"))
                + "."
            )
    return "\n".join(lines)


def publish_run(sizes: tuple[int, ...], command: str) -> None:
    """Measure ``sizes``; write bench/results/index_scale.json and the section of BENCHMARKS.md."""
    data = run(sizes)
    write_json("index_scale", data)  # kept even if the tables below fail
    publish("index_scale", data, command, body(data))


def parse_sizes(quick: bool, sizes: str | None) -> tuple[int, ...]:
    return tuple(int(s) for s in sizes.split(",")) if sizes else QUICK_SIZES if quick else SIZES


@click.command()
@click.option("--quick", is_flag=True, help=f"Only {', '.join(f'{s:,}' for s in QUICK_SIZES)} rows.")
@click.option("--sizes", default=None, help="Comma-separated gallery sizes (default: 1k to 1M).")
def main(quick: bool, sizes: str | None) -> None:
    """Index kind by gallery size: speed against flat, recall, memory, changes, strangers named."""
    command = "python -m bench.index_scale" + (f" --sizes {sizes}" if sizes else " --quick" if quick else "")
    publish_run(parse_sizes(quick, sizes), command)


if __name__ == "__main__":
    main()
