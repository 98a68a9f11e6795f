"""facewire bench: the metric functions on hand-made scores, and every subcommand in a tiny mode.

The subcommands run as real processes with $FACEWIRE_BENCH_DIR pointing into tmp_path, so the
repository's bench/results/ and BENCHMARKS.md are left alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from bench import metrics
from bench.accuracy import Photo, split, verification_pairs
from bench.classifier_throughput import bucketed
from bench.common import update_section
from harness.processes import SAMPLE, run_module


def test_threshold_at_far_allows_floor_far_times_n_impostors() -> None:
    impostors = [0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 0.0]
    assert metrics.threshold_at_far(impostors, 0.1) > 0.8
    assert metrics.threshold_at_far(impostors, 0.1) <= 0.9
    assert metrics.false_accept_rate(impostors, metrics.threshold_at_far(impostors, 0.1)) == pytest.approx(0.1)
    assert metrics.false_accept_rate(impostors, metrics.threshold_at_far(impostors, 0.01)) == 0.0
    assert metrics.threshold_at_far(impostors, 0.01) > 0.9
    assert metrics.false_accept_rate(impostors, metrics.threshold_at_far(impostors, 0.3)) == pytest.approx(0.3)


def test_missing_scores_are_never_accepted_and_count_wrong() -> None:
    assert metrics.false_accept_rate([math.nan, 0.9, 0.1], 0.5) == pytest.approx(1 / 3)
    correct = [True, True, False, True]
    scores = [0.9, math.nan, 0.95, 0.4]
    assert metrics.true_accept_rate(correct, scores, 0.5) == pytest.approx(0.25)
    assert metrics.rank1_accuracy([True, False, False, True]) == 0.5


def test_verification_accuracy_picks_threshold_on_other_folds() -> None:
    same = np.array([True, False] * 50)
    scores = np.where(same, 0.8, 0.2)
    result = metrics.verification_accuracy(scores, same)
    assert result["accuracy"] == 1.0 and result["pairs"] == 100
    assert 0.2 < result["threshold"] <= 0.8
    scores[0] = math.nan  # a same pair whose face was not found counts as "different"
    assert metrics.verification_accuracy(scores, same)["accuracy"] == pytest.approx(0.99)


def test_percentiles_and_recall() -> None:
    values = list(range(1, 101))
    got = metrics.percentiles(values)
    assert got["p50"] == pytest.approx(50.5) and got["p99"] == pytest.approx(99.01)
    assert math.isnan(metrics.percentiles([])["p95"])
    assert metrics.recall_at_1(np.array([[1, 2], [3, 4]]), np.array([[1, 9], [4, 3]])) == 0.5


def test_split_enrols_first_half_at_least_one() -> None:
    photos = [Photo("a", Path(f"a/{i}.jpg"), f"a{i}", True) for i in (3, 1, 2, 4, 5)]
    photos += [Photo("b", Path("b/1.jpg"), "b1", True), Photo("u", Path("u/1.jpg"), "u1", False)]
    enrolled, probes = split(photos)
    assert [p.sha256 for p in enrolled] == ["a1", "a2", "b1"]
    assert [p.sha256 for p in probes] == ["a3", "a4", "a5", "u1"]


def test_verification_pairs_are_deterministic_and_balanced() -> None:
    photos = [Photo(p, Path(f"{p}/{i}.jpg"), f"{p}{i}", True) for p in "abcd" for i in range(4)]
    pairs = verification_pairs(photos, 10)
    assert pairs == verification_pairs(photos, 10)
    assert [same for _, _, same in pairs] == [True, False] * 10
    assert all((a.person == b.person) == same and a != b for a, b, same in pairs)


def test_update_section_replaces_only_between_markers(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text("# B\n\n<!-- bench:x -->\nold\n<!-- /bench:x -->\nreading by hand\n")
    update_section("x", "new table", path)
    update_section("y", "other", path)
    text = path.read_text()
    assert "old" not in text and "new table" in text and "reading by hand" in text
    assert text.index("<!-- bench:y -->") > text.index("reading by hand")


def bench(tmp_path: Path, *args: str) -> dict:
    done = run_module("facewire_console.bench_cli", list(args), {"FACEWIRE_BENCH_DIR": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    name = args[0]
    assert f"<!-- bench:{name} -->" in (tmp_path / "BENCHMARKS.md").read_text()
    data: dict = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    assert data["machine"]["cores"] and data["command"].startswith("facewire bench")
    return data


def test_accuracy_on_the_bundled_sample(tmp_path: Path) -> None:
    data = bench(tmp_path, "accuracy", "--dataset", str(SAMPLE / "lfw"))
    assert data["dataset"]["files"] == 30 and len(data["dataset"]["content_sha256"]) == 64
    ident = data["models"][0]["identification"]
    for key in ("rank1", "tar_at_far_0.01", "tar_at_far_0.001", "unknown_rejected_at_threshold"):
        assert 0.0 <= ident[key] <= 1.0
    assert ident["rank1"] >= 0.9  # four well-lit LFW people: SFace gets these right
    assert 0.5 <= data["models"][0]["verification"]["accuracy"] <= 1.0


def test_accuracy_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    done = run_module("facewire_console.bench_cli", ["accuracy", "--dataset", str(tmp_path / "none")], {})
    assert done.returncode == 2 and "dataset not found" in done.stderr


def test_edge_tiny(tmp_path: Path) -> None:
    data = bench(tmp_path, "edge", "--quick", "--frames", "3")
    runs = [run for run in data["runs"] if "fps" in run]
    assert {run["style"] for run in runs} == {"naive", "every-face", "default"}  # the baselines and the pipeline
    assert all(run["frames"] == 3 and run["peak_rss_mb"] > 0 for run in runs)
    assert set(runs[0]["ms_per_frame"]) == {"decode", "detect", "align", "embed", "track", "publish"}


def test_wire_tiny(tmp_path: Path) -> None:
    data = bench(tmp_path, "wire", "--messages", "300", "--frames", "10")
    assert data["bytes"]["mean_bytes"]["message"] < data["bytes"]["mean_bytes"]["crop_q90"]
    assert data["rates"]["per_s"]["python_pub_to_python_sub"] > 0


@pytest.mark.slow
def test_classifier_tiny(tmp_path: Path) -> None:
    data = bench(tmp_path, "classifier", "--sizes", "500", "--messages", "200")
    assert {row["index"] for row in data["index"]} == {"flat", "hnsw", "ivf"}
    assert all(row["results_per_s"] > 0 for row in data["broker"])
    assert data["seed_http"][0]["requests_per_s"] > 0


@pytest.mark.slow
def test_e2e_tiny(tmp_path: Path) -> None:
    data = bench(tmp_path, "e2e", "--seconds", "1", "--max-rate", "200")
    assert [level["nodes"] for level in data["levels"]] == [1, 4, 16]
    assert all(level["received"] == level["sent"] for level in data["levels"])
    assert data["levels"][0]["classified_ms"]["p50"] > 0


@pytest.mark.slow
def test_chaos_tiny_loses_nothing(tmp_path: Path) -> None:
    """18 s of faults against real processes: every captured face recorded once, the figures in RELIABILITY.md."""
    done = run_module(
        "facewire_console.bench_cli", ["chaos", "--minutes", "0.3"], {"FACEWIRE_BENCH_DIR": str(tmp_path)}, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "results" / "chaos.json").read_text())
    assert data["command"] == "facewire bench chaos --minutes 0.3"
    assert data["faces_captured"] > 50 and data["drained_in_time"]
    assert data["faults"]["malformed-flood"] == 1 and data["faults"]["broker-kill9"] == 1
    assert (data["lost"], data["results_missing"], data["rows_duplicated"]) == (0, 0, 0)
    assert data["rows_recorded"] == data["faces_captured"] and data["rows_other_keys"] == 0
    assert data["unexpected_exits"] == {}
    flooded, lettered = data["flooded"], data["dead_lettered"]  # the flood comes first, before any restart
    assert lettered["classifier"] >= flooded["embeddings"] > 0 and lettered["recorder"] >= flooded["results"] > 0
    assert "<!-- bench:chaos -->" in (tmp_path / "RELIABILITY.md").read_text()


def test_fuzz_decoders_tiny(tmp_path: Path) -> None:
    """The atheris benchmark runs a decoder under libFuzzer and reports executions, coverage and no crash."""
    pytest.importorskip("atheris")
    args = ["--seconds", "2", "--only", "FaceResult", "--workdir", str(tmp_path / "work")]
    done = run_module("bench.fuzz_decoders", args, {"FACEWIRE_BENCH_DIR": str(tmp_path)}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = json.loads((tmp_path / "results" / "fuzz_decoders.json").read_text())["decoders"]
    assert row["decoder"] == "FaceResult" and row["executions"] > 1000 and row["coverage"] > 10
    assert row["crash"] == "" and row["crash_inputs"] == []
    assert "<!-- bench:fuzz-decoders -->" in (tmp_path / "RELIABILITY.md").read_text()


def test_fuzz_decoders_reports_a_crashing_decoder(tmp_path: Path) -> None:
    """json.loads raises ValueError on garbage: the fuzzer must find it, keep the input, and exit 1."""
    pytest.importorskip("atheris")
    args = ["--seconds", "5", "--only", "json:loads", "--workdir", str(tmp_path / "work")]
    done = run_module("bench.fuzz_decoders", args, {"FACEWIRE_BENCH_DIR": str(tmp_path)}, timeout=120)
    assert done.returncode == 1, done.stderr[-3000:]
    [row] = json.loads((tmp_path / "results" / "fuzz_decoders.json").read_text())["decoders"]
    assert "Error" in str(row["crash"]) and len(row["crash_inputs"]) == 1


def test_classifier_throughput_buckets_py_spy_samples_by_innermost_known_frame(tmp_path: Path) -> None:
    """bench.classifier_throughput --profile: a sample goes to the bucket of its innermost frame that names one."""
    raw = tmp_path / "py-spy.txt"
    worker = "thread (1);ClassifierService._work (classifier_service/service.py:1)"
    network = "thread (2);Client._thread_main (paho/mqtt/client.py:9);Client._handle_publish (paho/mqtt/client.py:4)"
    raw.write_text(
        f"{worker};result_json (classifier_service/service.py:2);dumps (orjson:1) 3\n"
        f"{worker};Matcher.match (classifier_service/matcher.py:3);IndexFlat.search (faiss/swigfaiss.py:5) 5\n"
        f"{network};FairQueue.put (classifier_service/fair_queue.py:7) 2\n"
        "thread (3);main (x.py:1) 10\n"
    )
    shares, threads = bucketed(raw)
    assert threads == {"paho network thread": 0.1, "classifier worker": 0.4, "other": 0.5}
    assert shares["JSON encoding of results"] == 0.15
    assert shares["FAISS search (GIL released)"] == 0.25
    assert shares["hand-off: fair queue put/take"] == 0.1
    assert shares["other"] == 0.5 and shares["MQTT: embeddings in (decode, route to handler)"] == 0


def test_warp_cost_on_the_bundled_sample(tmp_path: Path) -> None:
    args = ["--rounds", "1", "--dataset", str(SAMPLE / "lfw")]
    done = run_module("bench.warp_cost", args, {"FACEWIRE_BENCH_DIR": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "results" / "warp_cost.json").read_text())
    assert set(data["cost"]["ms_per_face"]) == {"bilinear", "bicubic (shipped)", "Lanczos", "embedding"}
    assert data["cost"]["faces"] >= 40  # 30 sample photos at two scales, a few without a face found
    scales = data["accuracy"]["scales"]
    assert set(scales) == {"0.22", "0.35"} and data["accuracy"]["people"] == 4
    for result in scales.values():
        assert result["strangers"] >= 5 and result["known"] >= 15  # 4 people's other photos, 6 strangers
        bilinear = result["warps"]["bilinear"]
        assert bilinear["gained"] == bilinear["lost"] == 0  # each warp is compared with bilinear, paired
        assert 0.0 <= result["warps"]["bicubic (shipped)"]["known_named"][0] <= 1.0
    assert "<!-- bench:warp-cost -->" in (tmp_path / "BENCHMARKS.md").read_text()


def test_warp_cost_without_the_dataset_says_so(tmp_path: Path) -> None:
    args = ["--rounds", "1", "--dataset", str(tmp_path / "none")]
    done = run_module("bench.warp_cost", args, {"FACEWIRE_BENCH_DIR": str(tmp_path)}, timeout=600)
    assert done.returncode == 0 and "no dataset at" in done.stderr
    assert "Accuracy not measured" in (tmp_path / "BENCHMARKS.md").read_text()
