"""Bot settings, from a TOML file and the environment.

Order of precedence: environment (``VOICEBOT_<SECTION>__<KEY>``), then the file
named by ``--config`` / ``$VOICEBOT_CONFIG`` / ``./voicebot.toml``, then defaults.
Defaults are the embedded ones: the shipped FAQ, the general city facts.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from voicebot.endpointing import EndpointingConfig

CONFIG_ENV = "VOICEBOT_CONFIG"
DEFAULT_CONFIG_FILE = Path("voicebot.toml")


class Thresholds(BaseModel):
    """Calibrated-confidence cut-offs for what the bot does with a match."""

    answer: float = Field(0.65, ge=0, le=1, description="At or above: answer directly")
    confirm: float = Field(0.40, ge=0, le=1, description="At or above: ask 'did you mean …?'")
    confirm_lead: float = Field(
        0.32,
        ge=0,
        le=1,
        description=(
            "Below 'confirm', down to this: still ask 'did you mean …?' when the entry"
            " scores well ahead of every other (a clear question told amid other words);"
            " at or above 'confirm' it never applies"
        ),
    )
    heard: float = Field(
        0.45,
        ge=0,
        le=1,
        description=(
            "Below this probability of what the recogniser heard (Whisper: mean token"
            " probability; Vosk: mean word posterior) the bot confirms instead of answering"
        ),
    )

    heard_floor: float = Field(
        0.25,
        ge=0,
        le=1,
        description=(
            "Whisper: below this probability of the chosen hypothesis without the vocabulary"
            " hint, an answer is confirmed however many hypotheses agree"
        ),
    )
    agreement: float = Field(
        0.67,
        ge=0,
        le=1,
        description=(
            "Whisper: an answer needs at least this share of the distinct hypotheses to point"
            " at its entry, or a probability without the hint of at least 'heard'"
        ),
    )

    agreement_floor: float = Field(
        0.2,
        ge=0,
        le=1,
        description=(
            "Whisper: below this share of the distinct hypotheses pointing at its entry, an"
            " answer is confirmed however probable its own text"
        ),
    )
    confirm_agreed: float = Field(
        0.2,
        ge=0,
        le=1,
        description=(
            "Whisper: a weaker match, down to this confidence, is confirmed instead of asked"
            " again when every one of at least 'agreed_hypotheses' distinct hypotheses points"
            " at the same entry"
        ),
    )
    agreed_hypotheses: int = Field(
        3, ge=2, description="Distinct hypotheses needed for 'confirm_agreed' and 'answer_agreed'"
    )
    answer_agreed: float = Field(
        0.45,
        ge=0,
        le=1,
        description=(
            "Whisper: a match below 'answer', down to this confidence, is answered instead"
            " of confirmed when every one of at least 'agreed_hypotheses' distinct hypotheses"
            " points at its entry and the chosen one is probable without the hint"
            " ('heard_agreed')"
        ),
    )
    heard_agreed: float = Field(
        0.6,
        ge=0,
        le=1,
        description=(
            "Whisper: the probability without the vocabulary hint that 'answer_agreed' needs"
            " of the chosen hypothesis"
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.confirm > self.answer:
            raise ValueError("thresholds.confirm must not exceed thresholds.answer")
        if self.answer_agreed > self.answer:
            raise ValueError("thresholds.answer_agreed must not exceed thresholds.answer")
        return self


class FaqSettings(BaseModel):
    directory: Path | None = Field(None, description="FAQ folder; default: the shipped FAQ")
    city_file: Path | None = Field(None, description="City facts; default: shipped general values")


class AsrSettings(BaseModel):
    """Speech recognition."""

    backend: Literal["whisper", "vosk"] = "whisper"
    whisper_model_dir: Path | None = Field(
        None, description="CTranslate2 Whisper model; default: the embedded Whisper base"
    )
    beam_size: int = Field(
        3,
        ge=1,
        le=10,
        description=(
            "Whisper's beam when it is free (5 decided no better on the validation audio"
            " for 29 % more CPU: tests/data/eval/CONSTANTS.md)"
        ),
    )
    busy_beam_size: int = Field(
        2,
        ge=1,
        le=10,
        description="beam while recognitions overlap (several calls at once), and the extra hints'",
    )
    pad_seconds: float = Field(
        1.5, ge=0, le=30, description="silence added to the utterance in Whisper's window"
    )
    compute_type: Literal["int8", "float32"] = Field(
        "int8", description="CTranslate2 weights and arithmetic (float32: slower)"
    )
    cpu_threads: int = Field(
        1,
        ge=1,
        description=(
            "threads per recognition; one leaves a core to the call loop (on 2 cores, two "
            "threads made a live recognition twice as slow: see bench/latency.py)"
        ),
    )
    workers: int = Field(
        2,
        ge=1,
        description=(
            "recognitions run in parallel (two on 2 cores: with 8 calls, reply latency p50"
            " 599 -> 453 ms, ~80 MB more memory; tests/data/eval/CONSTANTS.md)"
        ),
    )
    initial_prompt: str | None = Field(
        None, description="vocabulary hint for Whisper; default: the FAQ's topic titles"
    )
    faq_prompt: bool = Field(True, description="use the FAQ's topic titles as the hint")
    extra_hints: list[Literal["categories", "none"]] = Field(
        default_factory=lambda: ["categories", "none"],
        description=(
            "further decodings of the same audio while the recogniser is free, with the "
            "busy beam, their hypotheses matched too: 'categories' (a shorter hint of titles "
            "by category, no staff-only topics), 'none' (no hint); [] for one decoding. "
            "['none'] alone saves ~240 ms CPU a turn but lost 5 of 188 dev clips"
        ),
    )
    extras_on_demand: bool = Field(
        True,
        description=(
            "make the extra hints' decodings only when the main decoding does not settle "
            "the turn (a caller's request, or a sure answer the audio supports without the "
            "hint): same decisions on the validation audio for less recognition CPU alone; "
            "tests/data/eval/CONSTANTS.md"
        ),
    )
    n_best: int = Field(2, ge=1, le=10, description="hypotheses matched against the FAQ")
    vocabulary: Literal["japanese", "full"] = Field(
        "japanese",
        description=(
            "the embedded model's output tokens: 'japanese' keeps the 6,053 a Japanese "
            "transcript is written with (same decisions, recognition ~20 % faster); "
            "'full' all 51,865"
        ),
    )
    vosk_model_dir: Path | None = Field(None, description="default: vosk-ja-small if installed")


class TtsSettings(BaseModel):
    """Speech synthesis."""

    engine: Literal["kokoro", "pyttsx3"] = "kokoro"
    voice: str | None = Field(None, description="engine voice; default jf_alpha for kokoro")
    cache_dir: Path | None = Field(None, description="rendered speech; default in the user cache")
    threads: int = Field(
        1,
        ge=1,
        description=(
            "Kokoro: ONNX Runtime threads per synthesis (on 2 cores a second thread cost "
            "more CPU and was no faster: see bench/tts.py --prerender)"
        ),
    )
    parallel: int = Field(
        1,
        ge=1,
        description=(
            "Kokoro: syntheses at once; 1 leaves a core to the calls while answers render "
            "in the background (`voicebot prerender --jobs` overrides it)"
        ),
    )


class CallSettings(BaseModel):
    """Turn-taking and dialogue limits."""

    endpointing: EndpointingConfig = Field(default_factory=EndpointingConfig)
    yes_no_min_speech_ms: int = Field(150, ge=0)
    speculative_recognition: bool = True
    speculation_decode_after_ms: int | None = Field(
        200,
        ge=0,
        description=(
            "A speculative recognition decodes only once the caller's pause has lasted this "
            "long, or the turn ended (its encoder pass runs at once), or sooner where decoding "
            "is slow, so as to be done by the end of the turn; 0 or None: at once"
        ),
    )
    hold_incomplete_ms: int = Field(
        750,
        ge=0,
        description="Silence the bot waits after words that sound unfinished (〜んですが、〜は)",
    )
    merge_window_ms: int = Field(
        1000,
        ge=0,
        description=(
            "Speech resuming this soon after a turn, over a reply the caller has not heard "
            "out, continues the same sentence"
        ),
    )
    held_no_input_ms: int = Field(
        30000,
        ge=1000,
        le=120000,
        description=(
            "Silence allowed after the caller asks for a moment (「少々お待ちください」) "
            "before the bot asks whether they are ready"
        ),
    )
    max_turns: int = Field(12, ge=1)
    ack_after_ms: int = Field(
        450,
        ge=100,
        le=5000,
        description=(
            "Silence after the caller's question before the bot says 「はい。」 while the "
            "reply is prepared (about 0.85 s as the caller hears it, with the media path)"
        ),
    )
    filler_after_ms: int = Field(
        600,
        ge=200,
        le=5000,
        description=(
            "Silence after 「はい。」 or a filler, or inside a streamed answer, before the bot "
            "says 「少々お待ちください。」 (then 「もうしばらくお待ちください。」)"
        ),
    )
    give_up_after_ms: int = Field(
        12000,
        ge=2000,
        le=60000,
        description="A reply not started this long after the question: apologise and hand over",
    )


class FileAndEnvSettings(BaseSettings):
    """Base of every settings class: one TOML file and ``VOICEBOT_*`` variables for all.

    Each package (the core, telephony, the web app) reads its own sections of the same
    file and ignores the others, so one ``voicebot.toml`` configures a whole deployment.
    """

    model_config = SettingsConfigDict(
        env_prefix="VOICEBOT_", env_nested_delimiter="__", extra="ignore"
    )

    node: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=128,
        description=(
            "this process's name among the nodes sharing one database (unique per running "
            "`voicebot serve`); calls it leaves open when killed are closed at its next start"
        ),
    )

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


class Settings(FileAndEnvSettings):
    """All settings of the conversation core."""

    thresholds: Thresholds = Field(default_factory=Thresholds)
    faq: FaqSettings = Field(default_factory=FaqSettings)
    asr: AsrSettings = Field(default_factory=AsrSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    call: CallSettings = Field(default_factory=CallSettings)


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


S = TypeVar("S", bound=FileAndEnvSettings)


def load_settings(path: Path | str | None = None, kind: type[S] = Settings) -> S:  # type: ignore[assignment]
    """Settings of ``kind`` from ``path`` (or the default places) and the environment."""
    global _explicit_path
    chosen = Path(path) if path else None
    if chosen is not None and not chosen.exists():
        raise ConfigError(f"{chosen}: config file not found")
    _explicit_path = chosen
    try:
        return kind()
    except ValueError as exc:
        raise ConfigError(
            f"invalid settings ({chosen or _config_path() or 'environment'}): {exc}"
        ) from exc
    finally:
        _explicit_path = None
