"""Dashboard sessions and the login lockout against a real ``facewire web`` process (issue 18, item 8).

Clients come from distinct loopback addresses (127.0.0.2, 127.0.0.3...: Linux routes all of 127/8 to
``lo``), so "another address" is a real other peer, not a header.
"""

from __future__ import annotations

import http.client
import re
import urllib.parse
from pathlib import Path

from facewire_console.broker import LocalBroker
from harness.processes import run_module
from tests.web_support import PASSWORD, USER, RunningWeb

ATTEMPTS = 3


class WebClient:
    """One browser-like HTTP client from ``source`` (a loopback address) keeping the session cookie."""

    def __init__(self, port: int, source: str, forwarded_for: str | None = None) -> None:
        self.port = port
        self.source = source
        self.forwarded_for = forwarded_for
        self.cookie: str | None = None

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(self.source, 0))
        headers = {"Accept": "text/html"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if self.forwarded_for:
            headers["X-Forwarded-For"] = self.forwarded_for
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        connection.close()
        cookie = response.getheader("set-cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response

    def csrf(self, path: str = "/login") -> str:
        page = self.request("GET", path)
        found = re.search(rb'name="csrf" value="([^"]+)"', page.body)  # type: ignore[attr-defined]
        assert found, page.body  # type: ignore[attr-defined]
        return found.group(1).decode()

    def log_in(self, password: str = PASSWORD, user: str = USER) -> int:
        form = {"username": user, "password": password, "csrf": self.csrf(), "next": "/"}
        return self.request("POST", "/login", form).status


def start_web(broker: LocalBroker, tmp_path: Path, **env: str) -> RunningWeb:
    return RunningWeb(
        tmp_path,
        {"FACEWIRE_MQTT__URL": broker.url, "FACEWIRE_WEB__LOGIN_ATTEMPTS": str(ATTEMPTS), **env},
    ).start()


def test_logout_revokes_the_session_on_the_server(broker: LocalBroker, tmp_path: Path) -> None:
    web = start_web(broker, tmp_path)
    try:
        alice = WebClient(web.port, "127.0.0.1")
        assert alice.log_in() == 303
        assert alice.request("GET", "/").status == 200
        old_cookie = alice.cookie
        assert alice.request("POST", "/logout", {"csrf": alice.csrf("/")}).status == 303
        replay = WebClient(web.port, "127.0.0.1")
        replay.cookie = old_cookie
        answer = replay.request("GET", "/")
    finally:
        assert web.stop() == 0
    assert answer.status == 303 and answer.getheader("location", "").startswith("/login"), "the old cookie is dead"


def test_a_lockout_is_per_user_and_address_backs_off_and_the_admin_can_lift_it(
    broker: LocalBroker, tmp_path: Path
) -> None:
    web = start_web(broker, tmp_path)
    try:
        attacker = WebClient(web.port, "127.0.0.2")
        statuses = [attacker.log_in("wrong password") for _ in range(ATTEMPTS + 1)]
        locked = attacker.request("POST", "/login", {"username": USER, "password": PASSWORD, "csrf": attacker.csrf()})
        admin = WebClient(web.port, "127.0.0.3")
        admin_status = admin.log_in()
        unlocked = run_module(
            "facewire_console", ["web", "unlock", USER], {"FACEWIRE_WEB__DATA_DIR": str(tmp_path / "web-data")}
        )
        after_unlock = WebClient(web.port, "127.0.0.2").log_in()
    finally:
        assert web.stop() == 0
    assert statuses == [401] * ATTEMPTS + [429] and locked.status == 429, "the attacker's address is locked"
    assert admin_status == 303, "the same user from another address still logs in"
    assert unlocked.returncode == 0, unlocked.stderr
    assert after_unlock == 303, "web unlock lifted the lockout"


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(broker: LocalBroker, tmp_path: Path) -> None:
    """The proxy (127.0.0.1) is trusted: its X-Forwarded-For names the client. A peer that is not a trusted
    proxy cannot escape its own limit by writing the header."""
    web = start_web(broker, tmp_path, FACEWIRE_WEB__TRUSTED_PROXIES='["127.0.0.1/32"]')
    try:
        attacker = WebClient(web.port, "127.0.0.1", forwarded_for="203.0.113.9")
        attacks = [attacker.log_in("wrong password") for _ in range(ATTEMPTS + 1)]
        user = WebClient(web.port, "127.0.0.1", forwarded_for="198.51.100.7").log_in()
        spoofer = [
            WebClient(web.port, "127.0.0.4", forwarded_for=f"192.0.2.{n}").log_in("wrong password")
            for n in range(ATTEMPTS + 1)
        ]
    finally:
        assert web.stop() == 0
    assert attacks[-1] == 429 and user == 303, "one client behind the proxy locked out, another one not"
    assert spoofer[-1] == 429, "an untrusted peer's X-Forwarded-For is ignored"
