"""Detection-log benchmark: fill a SQLite log with synthetic results, time the indexed queries of ``facewire log``.

    .venv/bin/python -m bench.bench_recorder --rows 1000000

Writes bench/results/recorder.json and prints a Markdown table. Rows go in
through the recorder's own store (batched INSERT OR IGNORE, WAL, FULL sync);
50 nodes, 500 people plus 30 % unknown faces, capture times over 30 days.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from alert_service.sqlite_log import SqliteResultLog
from alert_service.store import LogQuery, LogRow
from bench.common import write_json
from facewire.schema import Candidate

NODES = 50
PEOPLE = 500
DAYS = 30
BATCH = 5000


def synthetic_rows(count: int, start: int, total: int, now: float, rng: np.random.Generator) -> list[LogRow]:
    """Rows ``start``..``start + count`` of ``total``, capture times rising from 30 days ago to ``now``."""
    nodes = rng.integers(0, NODES, count)
    people = rng.integers(0, PEOPLE, count)
    unknown = rng.random(count) < 0.3
    scores = np.where(unknown, rng.uniform(0.1, 0.45, count), rng.uniform(0.45, 0.9, count))
    stamps = now - DAYS * 86400 * (1 - (start + np.arange(count)) / total) - rng.uniform(0, 5, count)
    rows = []
    for i in range(count):
        name = "unknown" if unknown[i] else f"person_{people[i]:03d}"
        rows.append(
            LogRow(
                node=f"cam-{nodes[i]:02d}",
                seq=start + i,
                track=(start + i) // 8,
                frame=start + i,
                ts=float(stamps[i]),
                decided_at=float(stamps[i]) + 0.02,
                name=name,
                known=not unknown[i],
                score=float(scores[i]),
                threshold=0.45,
                gallery_version="bench",
                model="sface-2021dec",
                candidates=(Candidate(f"person_{people[i]:03d}", float(scores[i])),),
            )
        )
    return rows


def fill(log: SqliteResultLog, total: int, now: float) -> float:
    """Insert ``total`` rows in recorder-sized batches; returns rows per second."""
    rng = np.random.default_rng(6)
    started = time.perf_counter()
    for start in range(0, total, BATCH):
        log.insert(synthetic_rows(min(BATCH, total - start), start, total, now, rng))
    return total / (time.perf_counter() - started)


def timed(action: Callable[[], object], repeat: int = 7) -> float:
    """Median milliseconds of ``action`` after one warm-up run."""
    action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(samples)


def queries(log: SqliteResultLog, now: float) -> dict[str, Callable[[], object]]:
    def run(query: LogQuery) -> Callable[[], object]:
        return lambda: list(log.query(query))

    return {
        "newest 50": run(LogQuery()),
        "--person, newest 50": run(LogQuery(person="person_123")),
        "--node, newest 50": run(LogQuery(node="cam-07")),
        "--unknown, newest 50": run(LogQuery(unknown_only=True)),
        "--node --since 1d --until 0d": run(LogQuery(node="cam-07", since=now - 86400, until=now)),
        "--person --since 7d": run(LogQuery(person="person_123", since=now - 7 * 86400)),
        "--node --unknown, newest 50": run(LogQuery(node="cam-07", unknown_only=True)),
        "--person --node, newest 50": run(LogQuery(person="person_123", node="cam-07")),
        "--last-seen": lambda: log.last_seen("person_321"),
        "--person export, all rows": run(LogQuery(person="person_123", limit=0)),
        "retention pass (nothing to delete)": lambda: log.enforce_retention(DAYS + 1, 0, now),
    }


def cli_seconds(database: Path) -> float:
    """Wall time of a whole ``facewire log --person ... --limit 50`` process (Python start-up included)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "facewire_console", "log", "--database", str(database), "--person", "person_123"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", type=Path, default=None, help="Keep the log here (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facewire-bench-") as tmp:
        database = args.database or Path(tmp) / "results.sqlite"
        log = SqliteResultLog(database)
        now = time.time()
        rate = fill(log, args.rows, now) if log.count() < args.rows else 0.0
        timings = {name: round(timed(action), 3) for name, action in queries(log, now).items()}
        cli = round(cli_seconds(database), 3)
        size_mb = round(sum(p.stat().st_size for p in database.parent.glob(database.name + "*")) / 1e6, 1)
        count = log.count()
        log.close()
    path = write_json(
        "recorder",
        {"rows": count, "insert_rows_per_s": round(rate), "database_mb": size_mb, "query_ms": timings, "cli_s": cli},
    )
    print(f"{count:,} rows, inserted at {rate:,.0f} rows/s (batches of {BATCH}), {size_mb} MB; JSON in {path}\n")
    print("| `facewire log` query | median ms |\n|---|---|")
    for name, ms in timings.items():
        print(f"| {name} | {ms:.2f} |")
    print(f"| whole `facewire log --person X` process | {cli * 1000:.0f} |")


if __name__ == "__main__":
    main()
