"""Alerts as notifications through Apprise: ntfy, Telegram, Gotify, e-mail and ~100 more services, each named by
a URL (``ntfy://topic``, ``tgram://token/chat``, ``gotify://host/token``, ``mailtos://user:pass@host``,
``json://host/path``; https://github.com/caronc/apprise/wiki). Needs the ``notify`` extra (apprise)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from facewire.errors import ConfigError
from facewire.schema import Alert

TITLES = {"unknown": "Unknown person", "watchlist": "Watched person", "access": "Access rule broken"}


def notification(alert: Alert) -> tuple[str, str]:
    """The title and body people read on their phone."""
    title = f"facewire: {TITLES.get(alert.rule, alert.rule)} at {alert.node}"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alert.raised_at))
    return title, f"{alert.message}\nnode {alert.node}, {when} (alert {alert.id})"


class AppriseChannel:
    """Every alert to every configured Apprise URL; a failure of any URL is a failed attempt."""

    name = "apprise"

    def __init__(self, urls: Sequence[str]) -> None:
        import apprise  # the `notify` extra

        self._apprise = apprise.Apprise()
        self._warning = apprise.NotifyType.WARNING
        for url in urls:
            if not self._apprise.add(url):
                raise ConfigError(f"alerts.apprise_urls: Apprise does not understand {redact(url)!r}")

    def send(self, alert: Alert, timeout: float) -> None:
        """Send one notification per URL; raise ValueError naming the services that refused it.

        Apprise bounds each request with its own connect and read timeouts (``cto``/``rto`` URL arguments,
        4 s each by default), so ``timeout`` is not passed on."""
        title, body = notification(alert)
        result = self._apprise.notify(body=body, title=title, notify_type=self._warning)
        if not result:
            entries = getattr(result, "results", [])  # apprise >= 2: one result per URL
            failed = [entry.name for entry in entries if "SUCCESS" not in str(entry.status).upper()] or ["apprise"]
            raise ValueError(f"not delivered by {', '.join(failed)}")


def redact(url: str) -> str:
    """The URL's scheme and host part only: Apprise URLs carry tokens and passwords."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rpartition('@')[2]}/..."
