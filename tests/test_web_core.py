"""The dashboard's pure parts: accounts, login rate limit, CSRF comparison, upload checks, thumbnail paths."""

from __future__ import annotations

import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.config import load_settings
from facewire.errors import ConfigError
from facewire.schema.gallery import GalleryEvent
from facewire_console.web.auth import LoginLimiter, UserStore, csrf_matches, login_keys, session_secret
from facewire_console.web.library import SEND_BYTES, Library, UploadRefused, person_name, prepare_photo, valid_result
from facewire_console.web.pages import local_target
from harness.processes import SAMPLE, run_module


def test_accounts_are_argon2id_hashes_in_a_private_file(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    assert store.add("alice", "correct horse battery") is True
    assert store.add("alice", "another long password") is False  # a new password replaces the old one
    text = (tmp_path / "users.json").read_text()
    assert "$argon2id$" in text and "another long password" not in text
    assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600
    assert store.verify("alice", "another long password")
    assert not store.verify("alice", "correct horse battery")
    assert not store.verify("bob", "another long password")
    assert store.names() == ["alice"]
    with pytest.raises(ConfigError, match="too short"):
        store.add("bob", "short")
    with pytest.raises(ConfigError, match="user name"):
        store.add("../bob", "long enough password")


def test_a_corrupt_accounts_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_text("[1, 2]")
    with pytest.raises(ConfigError):
        UserStore(tmp_path / "users.json").verify("alice", "whatever password")


def test_login_limiter_locks_a_user_from_one_address_with_back_off() -> None:
    limiter = LoginLimiter(attempts=3, window=60)
    keys = login_keys("alice", "1.2.3.4")
    for second in range(3):
        assert limiter.retry_after(keys, now=100 + second) == 0
        limiter.failed(keys, now=100 + second)
    assert limiter.retry_after(keys, now=110) == pytest.approx(52)  # locked for one window from the third
    assert limiter.retry_after(login_keys("alice", "5.6.7.8"), now=110) == 0, "alice from elsewhere is not locked"
    assert limiter.retry_after(login_keys("bob", "5.6.7.8"), now=110) == 0
    assert limiter.retry_after(keys, now=162.5) == 0
    for second in range(3):
        limiter.failed(keys, now=200 + second)
    assert limiter.retry_after(keys, now=202) == pytest.approx(120), "the second lockout lasts twice as long"
    limiter.failed(login_keys("alice", "9.9.9.9"), now=202)
    assert limiter.unlock("alice") == 4  # alice from 1.2.3.4 and from 9.9.9.9, and both addresses
    assert limiter.retry_after(keys, now=203) == 0
    limiter.failed(keys, now=300)
    limiter.succeeded(keys)
    assert limiter.retry_after(keys, now=300) == 0


def test_login_limiter_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("facewire_console.web.auth.MAX_KEYS", 100)
    limiter = LoginLimiter(attempts=3, window=60)
    for index in range(1000):
        limiter.failed([f"user:guess-{index}"], now=float(index))
    assert len(limiter._keys) <= 100
    assert limiter.retry_after(["user:guess-999"], now=1000.0) == 0  # one failure: still allowed


def test_csrf_tokens_must_be_present_and_equal() -> None:
    assert csrf_matches("abc123", "abc123")
    for expected, given in (("abc123", "abc124"), ("abc123", ""), ("", ""), (None, None), ("abc123", None)):
        assert not csrf_matches(expected, given)


def test_session_secret_is_made_once_and_private(tmp_path: Path) -> None:
    first = session_secret(tmp_path / "secret")
    assert len(first) == 64 and session_secret(tmp_path / "secret") == first
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600


def test_redirect_targets_stay_on_this_site() -> None:
    assert local_target("/log?node=a") == "/log?node=a"
    for outside in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "log", None, 3):
        assert local_target(outside) == "/"


def test_uploads_are_decoded_and_re_encoded_small() -> None:
    photo = next((SAMPLE / "lfw" / "known" / "Tony_Blair").glob("*.jpg")).read_bytes()
    encoded = prepare_photo("a.jpg", photo, 1_000_000)
    assert encoded[:3] == b"\xff\xd8\xff" and cv2.imdecode(np.frombuffer(encoded, np.uint8), 1) is not None
    noise = np.random.default_rng(1).integers(0, 255, (3000, 2000, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", noise)
    assert ok
    shrunk = prepare_photo("noise.png", png.tobytes(), 50_000_000)
    assert len(shrunk) <= SEND_BYTES  # fits the broker's packet limit as base64
    with pytest.raises(UploadRefused, match="not a readable image"):
        prepare_photo("notes.jpg", b"hello, not an image", 1_000_000)
    with pytest.raises(UploadRefused, match="larger than the limit of 1000 bytes"):
        prepare_photo("big.jpg", photo + b"\0" * 1000, 1000)
    with pytest.raises(UploadRefused, match="empty"):
        prepare_photo("empty.jpg", b"", 1000)


def test_person_names_and_thumbnail_paths_cannot_leave_their_folder(tmp_path: Path) -> None:
    assert person_name(" Tony_Blair ") == "Tony_Blair"
    for bad in ("../x", "a/b", "unknown", "", "..", ".hidden"):
        with pytest.raises(UploadRefused):
            person_name(bad)
    library = Library(load_settings(None, {"web": {"data_dir": str(tmp_path)}}))
    photo = next((SAMPLE / "lfw" / "known" / "Tony_Blair").glob("*.jpg")).read_bytes()
    library.save_thumbnail("Tony_Blair", photo)
    (name,) = library.thumbnails("Tony_Blair")
    assert library.thumbnail_path("Tony_Blair", name) == tmp_path / "photos" / "Tony_Blair" / name
    (tmp_path / "secret.jpg").write_bytes(b"x")
    for person, file in (("..", "secret.jpg"), ("Tony_Blair", "../../secret.jpg"), ("Tony_Blair", "x.png")):
        assert library.thumbnail_path(person, file) is None
    library.on_gallery_event(GalleryEvent("forgotten", "f1", "c1", details={"person": "Tony_Blair"}))
    assert library.thumbnails("Tony_Blair") == [] and not (tmp_path / "photos" / "Tony_Blair").exists()


def test_result_ids_are_node_slash_seq() -> None:
    assert valid_result("cam-1/42") == "cam-1/42"
    for bad in ("cam-1", "cam 1/2", "cam/1/2", "cam/-1", "cam/x", "+/1", "cam/" + "9" * 30):
        with pytest.raises(UploadRefused):
            valid_result(bad)


def test_the_server_refuses_to_start_without_an_account(tmp_path: Path) -> None:
    env = {"FACEWIRE_WEB__USERS_FILE": str(tmp_path / "users.json"), "FACEWIRE_WEB__SECRET_FILE": str(tmp_path / "s")}
    started = run_module("facewire_console", ["web", "--port", "1"], env, timeout=60)
    assert started.returncode == 2 and "facewire web add-user NAME" in started.stderr
