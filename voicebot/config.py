"""Bot settings, from a TOML file and the environment.

Order of precedence: environment (``VOICEBOT_<SECTION>__<KEY>``), then the file
named by ``--config`` / ``$VOICEBOT_CONFIG`` / ``./voicebot.toml``, then defaults.
Defaults are the embedded ones: the shipped FAQ, the general city facts.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "VOICEBOT_CONFIG"
DEFAULT_CONFIG_FILE = Path("voicebot.toml")


class Thresholds(BaseModel):
    """Calibrated-confidence cut-offs for what the bot does with a match."""

    answer: float = Field(0.70, ge=0, le=1, description="At or above: answer directly")
    confirm: float = Field(0.40, ge=0, le=1, description="At or above: ask 'did you mean …?'")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.confirm > self.answer:
            raise ValueError("thresholds.confirm must not exceed thresholds.answer")
        return self


class FaqSettings(BaseModel):
    directory: Path | None = Field(None, description="FAQ folder; default: the shipped FAQ")
    city_file: Path | None = Field(None, description="City facts; default: shipped general values")


class Settings(BaseSettings):
    """All settings of the bot."""

    model_config = SettingsConfigDict(env_prefix="VOICEBOT_", env_nested_delimiter="__")

    thresholds: Thresholds = Field(default_factory=Thresholds)
    faq: FaqSettings = Field(default_factory=FaqSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


_explicit_path: Path | None = None


def _config_path() -> Path | None:
    if _explicit_path is not None:
        return _explicit_path
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None


class ConfigError(ValueError):
    """The settings file or environment cannot be used."""


def load_settings(path: Path | str | None = None) -> Settings:
    """Settings from ``path`` (or the default places) and the environment."""
    global _explicit_path
    chosen = Path(path) if path else None
    if chosen is not None and not chosen.exists():
        raise ConfigError(f"{chosen}: config file not found")
    _explicit_path = chosen
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigError(
            f"invalid settings ({chosen or _config_path() or 'environment'}): {exc}"
        ) from exc
    finally:
        _explicit_path = None
