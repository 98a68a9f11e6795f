"""Storage benchmark: the recorder's store on SQLite and on PostgreSQL, side by side.

    .venv/bin/python -m bench.bench_storage --rows 1000000
    .venv/bin/python -m bench.bench_storage --rows 1000000 --postgres postgresql://user@host/db

Per engine: rows/s the detection log takes in recorder-sized batches (one
writer; then two writers, as two recorder replicas, each also re-sending a
quarter of the other's rows), and the ``facewire log`` query times at
``--rows`` rows (the queries, rows and timing of bench/bench_recorder.py).
Without ``--postgres`` a throw-away PostgreSQL server is started from the
installed binaries (as the tests do). Writes bench/results/storage.json.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from alert_service.store import LogRow, ResultLog
from alert_service.store_factory import open_result_log
from bench.bench_recorder import queries, synthetic_rows, timed
from bench.common import write_json

RECORDER_BATCH = 500  # recorder.batch_max default
FILL_BATCH = 5000


def one_writer(log: ResultLog, rows: int, start: int, now: float) -> float:
    """Rows/s of one recorder writing ``rows`` new rows in recorder-sized batches."""
    rng = np.random.default_rng(1)
    batches = [
        synthetic_rows(RECORDER_BATCH, s, start + rows, now, rng) for s in range(start, start + rows, RECORDER_BATCH)
    ]
    started = time.perf_counter()
    for batch in batches:
        log.insert(batch)
    return rows / (time.perf_counter() - started)


def two_writers(url: str, rows: int, start: int, now: float) -> float:
    """Rows/s of two replicas on one database, each re-sending a quarter of the other's rows (redelivery)."""
    rng = np.random.default_rng(2)
    batches = [
        synthetic_rows(RECORDER_BATCH, s, start + rows, now, rng) for s in range(start, start + rows, RECORDER_BATCH)
    ]
    halves = [batches[0::2], batches[1::2]]
    plans = [halves[0] + halves[1][::4], halves[1] + halves[0][::4]]
    logs = [open_result_log(url), open_result_log(url)]
    threads = [threading.Thread(target=_write_all, args=(log, plan)) for log, plan in zip(logs, plans, strict=True)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = rows / (time.perf_counter() - started)
    for log in logs:
        log.close()
    return rate


def _write_all(log: ResultLog, batches: list[list[LogRow]]) -> None:
    for batch in batches:
        log.insert(batch)


def fill(log: ResultLog, total: int, now: float) -> float:
    """Bulk-load the log to ``total`` rows (row generation included in the time); rows/s."""
    rng = np.random.default_rng(6)
    first = log.count()
    started = time.perf_counter()
    for start in range(first, total, FILL_BATCH):
        log.insert(synthetic_rows(min(FILL_BATCH, total - start), start, total, now, rng))
    return (total - first) / max(time.perf_counter() - started, 1e-9)


def analyze(url: str) -> None:
    """Refresh PostgreSQL's planner statistics after the bulk load (autovacuum would, a little later)."""
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE results")


def measure(url: str, rows: int, writes: int) -> dict[str, object]:
    """Fill to ``rows``, time the log queries, then the write rates on top of the full table."""
    log = open_result_log(url)
    now = time.time()
    fill_rate = fill(log, rows, now)
    analyze(url)
    timings = {name: round(timed(action), 3) for name, action in queries(log, now).items()}  # type: ignore[arg-type]
    single = one_writer(log, writes, 10_000_000, now)
    log.close()
    double = two_writers(url, writes, 20_000_000, now)
    check = open_result_log(url)
    count = check.count()
    check.close()
    return {
        "rows": count,
        "fill_rows_per_s": round(fill_rate),
        "recorder_rows_per_s": round(single),
        "two_replicas_rows_per_s": round(double),
        "query_ms": timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows in the log when the queries are timed.")
    parser.add_argument("--writes", type=int, default=50_000, help="Rows written by the write-rate runs.")
    parser.add_argument("--postgres", default=None, help="A PostgreSQL URL (default: start a throw-away server).")
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="facewire-bench-") as tmp:
        results["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'results.sqlite'}", args.rows, args.writes)
        server = None
        url = args.postgres
        if url is None:
            from harness.postgres import PostgresServer, postgres_bindir

            bindir = postgres_bindir()
            if bindir is None:
                raise SystemExit("no PostgreSQL binaries (apt-get install postgresql) and no --postgres URL")
            server = PostgresServer(bindir).start()
            url = server.create_database()
        try:
            results["postgresql"] = measure(url, args.rows, args.writes)
        finally:
            if server is not None:
                server.stop()
    path = write_json("storage", {"batch": RECORDER_BATCH, "engines": results})
    print(f"JSON in {path}\n")
    print("| | SQLite | PostgreSQL |\n|---|---|---|")
    lite, pg = results["sqlite"], results["postgresql"]
    for key, label in (
        ("recorder_rows_per_s", f"recorder writes, batches of {RECORDER_BATCH} (rows/s)"),
        ("two_replicas_rows_per_s", "two replicas on one database, 25 % redelivered (new rows/s)"),
        ("fill_rows_per_s", f"bulk fill, batches of {FILL_BATCH} (rows/s)"),
    ):
        print(f"| {label} | {lite[key]:,} | {pg[key]:,} |")
    lite_ms: dict[str, float] = lite["query_ms"]  # type: ignore[assignment]
    pg_ms: dict[str, float] = pg["query_ms"]  # type: ignore[assignment]
    for name, ms in lite_ms.items():
        print(f"| `facewire log` {name} at {args.rows:,} rows (ms) | {ms:.2f} | {pg_ms[name]:.2f} |")


if __name__ == "__main__":
    main()
