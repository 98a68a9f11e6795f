"""The one exception hierarchy of facewire; library errors are translated at the boundary."""

from __future__ import annotations


class FacewireError(Exception):
    """Base class of every error facewire raises on purpose."""


class ConfigError(FacewireError):
    """A configuration file, variable or flag is invalid."""


class SchemaError(FacewireError):
    """A message payload is malformed; ``reason`` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ModelError(FacewireError):
    """A model file is missing, corrupt or of the wrong kind."""


class SourceError(FacewireError):
    """A frame source (camera, video, folder, stream) cannot be opened or read."""


class ImageError(FacewireError):
    """An image file is corrupt, too large or not an image."""


class BrokerError(FacewireError):
    """The MQTT broker refused or dropped the connection."""
