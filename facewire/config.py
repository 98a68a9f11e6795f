"""Configuration: one typed model per service, from TOML, environment and CLI flags.

Precedence, lowest to highest: built-in defaults < TOML file (``--config`` or
``FACEWIRE_CONFIG``) < environment (``FACEWIRE_<SECTION>__<FIELD>``, e.g.
``FACEWIRE_CLASSIFIER__THRESHOLD=0.5``) < command-line flags. Unknown keys are
rejected. ``facewire config reference`` prints every option with its default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from facewire.errors import ConfigError

DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facewire"
DEFAULT_STATE_DIR = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "facewire"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MqttSettings(Section):
    url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL: mqtt://HOST:PORT or mqtts://HOST:PORT")
    username: str | None = Field(None, description="Broker user name (none: anonymous)")
    password: str | None = Field(None, description="Broker password; prefer the environment variable")
    topic_prefix: str = Field("facewire", description="First level of every topic", min_length=1)
    keepalive: int = Field(30, description="MQTT keep-alive in seconds", ge=5, le=3600)
    connect_timeout: float = Field(10.0, description="Seconds to wait for the broker's CONNACK", gt=0)
    tls_ca: Path | None = Field(None, description="CA certificate for mqtts://")
    tls_cert: Path | None = Field(None, description="Client certificate for mqtts://")
    tls_key: Path | None = Field(None, description="Client key for mqtts://")


class ModelSettings(Section):
    embedder: str = Field("sface-2021dec", description="Embedder model id from the registry, or a path to an ONNX file")
    detector: Literal["yunet"] = Field("yunet", description="Face detector")
    threads: int = Field(1, description="Inference threads per model (1 is fastest on 2 cores)", ge=1, le=64)
    cache_dir: Path = Field(DEFAULT_CACHE_DIR, description="Where converted models and gallery caches live")


class EdgeSettings(Section):
    node_id: str = Field("edge", description="This node's id (one topic level)")
    source: str = Field("0", description="Video file, camera index, rtsp:// or http:// URL, or image folder")
    max_fps: float = Field(0.0, description="Frames per second to process at most (0: as fast as possible)", ge=0)
    skip_frames: int = Field(0, description="Frames to skip after each processed frame", ge=0)
    min_face: int = Field(40, description="Smallest face side in pixels that is embedded", ge=8)
    det_threshold: float = Field(0.7, description="Detector score threshold", gt=0, lt=1)
    track_iou: float = Field(0.3, description="IoU that continues a track between frames", gt=0, lt=1)
    track_max_age: float = Field(1.0, description="Seconds a track survives without a detection", gt=0)
    dedup_cosine: float = Field(
        0.9, description="Do not republish a track's face this similar to its last one", gt=0, le=1
    )
    refresh_seconds: float = Field(5.0, description="Republish a track at least this often even if unchanged", gt=0)
    heartbeat_seconds: float = Field(10.0, description="Interval of the status heartbeat", gt=0)
    state_dir: Path = Field(DEFAULT_STATE_DIR, description="Where the node keeps its sequence counter")


class ClassifierSettings(Section):
    gallery: Path = Field(Path("gallery"), description="Enrolment photos as GALLERY/<person>/[<subdir>/]*.jpg")
    threshold: float = Field(0.45, description="Cosine score at or above which a face is named", ge=-1, le=1)
    top_k: int = Field(5, description="Nearest enrolled embeddings searched per face", ge=1, le=100)
    batch_max: int = Field(64, description="Most embeddings searched in one FAISS call", ge=1, le=4096)
    batch_wait_ms: float = Field(5.0, description="How long to wait to fill a batch", ge=0)
    queue_max: int = Field(4096, description="Messages held in memory before the broker is paced", ge=16)
    share_group: str = Field("classifiers", description="Shared-subscription group of the replicas")
    instance: str = Field("", description="Replica id (default: host name and process id)")


class Settings(BaseSettings):
    """All of facewire's configuration."""

    model_config = SettingsConfigDict(env_prefix="FACEWIRE_", env_nested_delimiter="__", extra="forbid")

    mqtt: MqttSettings = MqttSettings()
    model: ModelSettings = ModelSettings()
    edge: EdgeSettings = EdgeSettings()
    classifier: ClassifierSettings = ClassifierSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("FACEWIRE_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """Load settings from ``config_file`` (or FACEWIRE_CONFIG), the environment and flag ``overrides``.

    ``overrides`` maps section -> field -> value; ``None`` values (flags not given) are ignored.
    """
    cleaned = {
        section: {key: value for key, value in fields.items() if value is not None}
        for section, fields in (overrides or {}).items()
    }
    previous = os.environ.get("FACEWIRE_CONFIG")
    try:
        if config_file is not None:
            if not config_file.is_file():
                raise ConfigError(f"config file not found: {config_file}")
            os.environ["FACEWIRE_CONFIG"] = str(config_file)
        return Settings(**{k: v for k, v in cleaned.items() if v})  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read configuration: {exc}") from exc
    finally:
        if config_file is not None:
            if previous is None:
                os.environ.pop("FACEWIRE_CONFIG", None)
            else:
                os.environ["FACEWIRE_CONFIG"] = previous


def _describe(exc: ValidationError) -> str:
    lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
    return "invalid configuration: " + "; ".join(lines)


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key, environment variable, default, description) for every option, generated from the schema."""
    rows = []
    for section_name, section_field in Settings.model_fields.items():
        section_type = section_field.annotation
        assert isinstance(section_type, type) and issubclass(section_type, Section)
        for name, info in section_type.model_fields.items():
            default = info.get_default(call_default_factory=True)
            rows.append(
                (
                    f"{section_name}.{name}",
                    f"FACEWIRE_{section_name.upper()}__{name.upper()}",
                    "" if default is None else str(default),
                    info.description or "",
                )
            )
    return rows
