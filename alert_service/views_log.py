"""``facewire log``: query the detection log, colour-coded table, CSV / JSON export, last seen."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import click
from rich.console import Console
from rich.table import Table

from alert_service.store import LogQuery, LogRow, ResultLog
from alert_service.store_factory import open_result_log
from facewire.cli_common import common_options, fail_cleanly, settings_from
from facewire.errors import ConfigError
from facewire.presentation import result_style

RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EXPORT_FIELDS = list(LogRow("n", 0, 0, 0, 0.0, 0.0, "n", False, 0.0, 0.0, "g", "m").export())


def parse_when(text: str, now: float) -> float:
    """Epoch seconds from ``1700000000``, ``15m`` / ``2h`` / ``7d`` (ago) or an ISO time (local if naive)."""
    text = text.strip()
    match = RELATIVE.fullmatch(text)
    if match:
        return now - float(match.group(1)) * UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise ConfigError(f"cannot read time {text!r}: use 2024-05-01T08:00, 15m, 2h, 7d or epoch seconds") from exc


def clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def short_clock(ts: float) -> str:
    """``HH:MM:SS`` for today, ``MM-DD HH:MM:SS`` before (keeps the table narrow)."""
    moment = dt.datetime.fromtimestamp(ts)
    return moment.strftime("%H:%M:%S" if moment.date() == dt.date.today() else "%m-%d %H:%M:%S")


def open_existing_log(database: Path | str) -> ResultLog:
    """The detection log; a SQLite file must exist already (a postgresql:// URL is opened as is)."""
    if isinstance(database, str):
        return open_result_log(database)
    if not database.exists():
        raise ConfigError(f"no detection log at {database} (start it with: alert-service run recorder)")
    return open_result_log(database)


def render_table(rows: Iterable[LogRow], console: Console) -> int:
    """Print rows in the seed's colours: green known, yellow low confidence, red unknown."""
    table = Table("time", "node", "track", "seq", "name", "score", "threshold", "gallery", header_style="bold")
    count = 0
    for row in rows:
        table.add_row(
            short_clock(row.ts),
            row.node,
            str(row.track),
            str(row.seq),
            row.name,
            f"{row.score:.3f}",
            f"{row.threshold:.2f}",
            row.gallery_version,
            style=result_style(row.as_result()),
        )
        count += 1
    console.print(table)
    return count


def export(rows: Iterable[LogRow], kind: str, out: IO[str]) -> int:
    """Write rows as CSV (header + one line per row) or as one JSON array; returns the row count."""
    count = 0
    if kind == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.export())
            count += 1
        return count
    out.write("[")
    for row in rows:
        out.write(("," if count else "") + "\n" + json.dumps(row.export()))
        count += 1
    out.write("\n]\n")
    return count


@click.command("log")
@common_options
@click.option("--database", type=click.Path(path_type=Path, dir_okay=False), default=None, help="SQLite log file.")
@click.option("--person", default=None, help="Only this person.")
@click.option("--node", default=None, help="Only this node.")
@click.option("--since", default=None, help="From this time: 2024-05-01T08:00, 15m, 2h, 7d (ago) or epoch.")
@click.option("--until", default=None, help="Before this time (same forms).")
@click.option("--unknown", "unknown_only", is_flag=True, help="Only unknown faces.")
@click.option("--limit", type=int, default=50, show_default=True, help="Newest rows shown (0: all).")
@click.option("--format", "kind", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json (the --json of every command).")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write export here.")
@click.option("--last-seen", "last_seen", default=None, metavar="PERSON", help="Where and when PERSON was last seen.")
@fail_cleanly
def log_command(
    config_file: Path | None,
    broker_url: str | None,
    verbose: int,
    database: Path | None,
    person: str | None,
    node: str | None,
    since: str | None,
    until: str | None,
    unknown_only: bool,
    limit: int,
    kind: str,
    as_json: bool,
    output: Path | None,
    last_seen: str | None,
) -> None:
    """The detection log: who was seen where and when (newest first)."""
    kind = "json" if as_json else kind
    settings = settings_from(config_file, broker_url, verbose, recorder={"database": database})
    store = open_existing_log(settings.recorder.database_url or settings.recorder.database)
    try:
        if last_seen is not None:
            _print_last_seen(store, last_seen)
            return
        now = time.time()
        query = LogQuery(
            person=person,
            node=node,
            since=None if since is None else parse_when(since, now),
            until=None if until is None else parse_when(until, now),
            unknown_only=unknown_only,
            limit=max(limit, 0),
        )
        rows = store.query(query)
        if kind == "table":
            shown = render_table(rows, Console())
            click.echo(f"{shown} rows (newest first; --limit 0 for all)", err=True)
            return
        out = output.open("w", newline="") if output else sys.stdout
        try:
            written = export(rows, kind, out)
        finally:
            if output:
                out.close()
        click.echo(f"{written} rows exported" + (f" to {output}" if output else ""), err=True)
    finally:
        store.close()


def _print_last_seen(store: ResultLog, person: str) -> None:
    row = store.last_seen(person)
    if row is None:
        click.echo(f"{person} has not been seen (in the retained log)")
        sys.exit(1)
    ago = time.time() - row.ts
    click.echo(
        f"{person} last seen on {row.node} at {clock(row.ts)} ({_ago(ago)} ago), score {row.score:.3f}, "
        f"track {row.track}, seq {row.seq}"
    )


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{max(seconds, 0):.0f}s"
