"""Coverage-guided fuzzing (atheris / libFuzzer) of every wire decoder in ``facewire.schema.catalog.MESSAGES``.

    .venv/bin/python -m bench.fuzz_decoders --seconds 30

Each decoder runs in its own child process for ``--seconds`` (libFuzzer's ``-max_total_time``), seeded with
a valid message of its class (bench/fuzz_seeds/<class>.seed, the encoded example of tests/test_schema.py), a
payload of its field names, and a dictionary of those names and of hostile tokens. The only acceptable exception
is ``facewire.errors.SchemaError``; anything else is a crash, saved under the work folder with its input.
Writes bench/results/fuzz_decoders.json and the ``fuzz-decoders`` section of RELIABILITY.md; exits 1 if any
decoder crashed.
A benchmark, not a test: it runs for minutes, outside CI's time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

from bench.common import machine_line, output_dir, table, update_section, write_json

RELIABILITY_MD = Path(__file__).resolve().parent.parent / "RELIABILITY.md"
SEEDS = Path(__file__).resolve().parent / "fuzz_seeds"
TOKENS = ('"v"', "1e400", "-0", "NaN", "Infinity", "[[[[", "{}", '"\\u0000"', '"\\ud800"', "١٢٣", "null", "true")


def seed_value(name: str) -> object:
    """A plausible value for a field of this name (a start for the mutations, not a valid message)."""
    if name in ("bbox",):
        return [0.0, 0.0, 10.0, 10.0]
    if name in ("node", "model", "name", "service", "person", "state", "kind", "reason", "actor"):
        return "cam-1"
    if name in ("quality", "counts", "attributes"):
        return {"size": 1.0}
    if name in ("candidates", "faces", "points", "embeddings"):
        return [{"name": "a", "score": 0.5}]
    return 1


def seeds(kind: type | None) -> list[bytes]:
    """Starting inputs for one message class: its fields with plausible values, as JSON or msgpack."""
    if kind is None:
        return [b'{"v": 1}']
    names = [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else []
    data: dict[str, object] = {"v": 1, **{name: seed_value(name) for name in names}}
    if kind.__name__ == "FaceEmbedding":
        data.update(dim=4, emb=b"\x00<" * 4, ts=1.0, det=0.9, frame=1, track=1, seq=1)
        return [msgpack.packb(data, use_bin_type=True)]
    if kind.__name__ == "SensorState":
        return [b"cam-1", b"unknown", b"3"]
    return [json.dumps(data).encode(), json.dumps({"v": 1}).encode()]


def escaped(token: str) -> str:
    """A libFuzzer dictionary entry: printable ASCII as is, every other byte as \\xNN."""
    return "".join(chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\x{b:02x}" for b in token.encode("utf-8"))


def fuzz_one(name: str, seconds: int, workdir: Path) -> dict[str, object]:
    """Run one decoder's fuzzer in a child process; its executions, coverage and crash (if any)."""
    corpus, crashes = workdir / name / "corpus", workdir / name / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    from facewire.schema.catalog import MESSAGES

    kind = MESSAGES[name].kind if name in MESSAGES else None
    valid = SEEDS / f"{name}.seed"
    for index, seed in enumerate([*seeds(kind), *([valid.read_bytes()] if valid.exists() else [])]):
        (corpus / f"seed-{index}").write_bytes(seed)
    names = [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else []
    dictionary = workdir / name / "tokens.dict"
    dictionary.write_text("".join(f'"{escaped(token)}"\n' for token in (*TOKENS, *(f'"{n}"' for n in names))))
    args = [f"-max_total_time={seconds}", f"-dict={dictionary}", f"-artifact_prefix={crashes}/", "-rss_limit_mb=2048"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bench.fuzz_decoders", "--child", name, "--", *args, str(corpus)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    log = done.stdout + done.stderr  # atheris prints the Python exception on stdout, libFuzzer on stderr
    runs = re.findall(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE)\s+cov: (\d+)", log)
    found = sorted(p.name for p in crashes.iterdir())
    error = re.search(r"=== Uncaught Python exception: ===\n(.+)", log)
    if done.returncode != 0 and not error and not found:
        raise RuntimeError(f"the fuzzer of {name} did not run:\n{log[-2000:]}")
    return {
        "decoder": name,
        "seconds": round(time.monotonic() - started, 1),
        "executions": int(runs[-1][0]) if runs else 0,
        "coverage": int(runs[-1][1]) if runs else 0,
        "exit": done.returncode,
        "crash": error.group(1) if error else ("" if done.returncode == 0 else log[-600:]),
        "crash_inputs": found,
    }


def outside_decoder(spec: str) -> Callable[[bytes], object]:
    """``module:function``, a decoder outside the catalog (a known-bad one shows that crashes are caught)."""
    module, _, attribute = spec.partition(":")
    decoder: Callable[[bytes], object] = getattr(importlib.import_module(module), attribute)
    return decoder


def child(name: str, args: list[str]) -> None:
    """Inside the child process: instrument facewire, then hand ``args`` to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["facewire"]):
        from facewire.errors import SchemaError
        from facewire.schema.catalog import MESSAGES
    decode = MESSAGES[name].decode if name in MESSAGES else outside_decoder(name)

    def target(data: bytes) -> None:
        with contextlib.suppress(SchemaError):
            decode(data)

    atheris.Setup([sys.argv[0], *args], target)
    atheris.Fuzz()


def publish(rows: list[dict[str, object]], command: str) -> Path:
    """The ``fuzz-decoders`` section of RELIABILITY.md."""
    crashed = [row for row in rows if row["crash"]]
    body = "\n\n".join(
        [
            "### Coverage-guided fuzzing of the decoders (atheris, a benchmark outside CI)",
            machine_line(command),
            table(
                ["decoder", "seconds", "executions", "coverage (edges)", "crash"],
                [
                    (r["decoder"], r["seconds"], f"{r['executions']:,}", r["coverage"], r["crash"] or "none")
                    for r in rows
                ],
            ),
            f"{len(crashed)} of {len(rows)} decoders raised something other than SchemaError."
            if crashed
            else f"Every one of the {len(rows)} decoders raised only SchemaError on every input.",
        ]
    )
    return update_section("fuzz-decoders", body, (output_dir() or RELIABILITY_MD.parent) / RELIABILITY_MD.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="Fuzzing time per decoder.")
    parser.add_argument(
        "--only", action="append", default=None, help="A message class, or module:function; repeatable."
    )
    parser.add_argument("--workdir", type=Path, default=None, help="Keep corpora and crash inputs here.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("libfuzzer", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        child(options.child, options.libfuzzer)
        return
    from facewire.schema.catalog import MESSAGES

    names = options.only or sorted(MESSAGES)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="facewire-fuzz-"))
    rows = []
    for name in names:
        row = fuzz_one(name, options.seconds, workdir)
        print(f"{name}: {row['executions']:,} runs, cov {row['coverage']}, crash: {row['crash'] or 'none'}")
        rows.append(row)
    command = "python -m bench.fuzz_decoders " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json("fuzz_decoders", {"command": command, "workdir": str(workdir), "decoders": rows})
    publish(rows, command)
    print(f"corpora and crash inputs in {workdir}")
    if any(row["crash"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
