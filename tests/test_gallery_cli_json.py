"""`--json` on the gallery commands (issue 19.8): enroll, whereis, rename, reload, unknowns, forget on a real store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.processes import SAMPLE, run_module

KNOWN = SAMPLE / "lfw" / "known"


def facewire_json(args: list[str], env: dict[str, str]) -> dict[str, object]:
    done = run_module("facewire_console", [*args, "--offline", "--json"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_every_gallery_command_prints_json(tmp_path: Path) -> None:
    env = {"FACEWIRE_GALLERY__STORE_DIR": str(tmp_path / "store"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    photos = tmp_path / "photos"
    shutil.copytree(KNOWN / "Tony_Blair", photos)
    shutil.copy(SAMPLE / "lfw" / "unknown" / "Jessica_Simpson" / "Jessica_Simpson_0001.jpg", photos / "not-a.jpg")
    (photos / "broken.jpg").write_bytes(b"not an image")
    enrolled = facewire_json(["enroll", "Tony", str(photos)], env)
    refused = {Path(r["file"]).name: r for r in enrolled["rejected"]}  # type: ignore[attr-defined]
    assert enrolled["photos"] == 8 and enrolled["enrolled"] + len(refused) == 8  # type: ignore[operator]
    assert enrolled["enrolled"] >= 4  # type: ignore[operator]
    assert refused["broken.jpg"]["by"] == "checks" and "image" in refused["broken.jpg"]["reason"]
    where = facewire_json(["whereis", "Tony"], env)
    assert where == {"person": "Tony", "last_seen": None}
    renamed = facewire_json(["rename", "Tony", "Tony_Blair"], env)
    assert [r["event"] for r in renamed["replicas"]] == ["renamed"]  # type: ignore[index]
    reloaded = facewire_json(["reload"], env)
    assert reloaded["replicas"][0]["event"] == "reloaded"  # type: ignore[index]
    assert facewire_json(["unknowns"], env) == {"clusters": []}
    forgot = facewire_json(["forget", "Tony_Blair"], env)
    assert forgot["person"] == "Tony_Blair" and forgot["replicas"][0]["event"] == "forgotten"  # type: ignore[index]


@pytest.mark.parametrize(
    "command", ["enroll", "forget", "rename", "reload", "unknowns", "whereis", "people", "log", "scan"]
)
def test_the_help_of_each_data_command_offers_json(command: str) -> None:
    done = run_module("facewire_console", [command, "--help"], {})
    assert done.returncode == 0 and "--json" in done.stdout, done.stdout
