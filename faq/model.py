"""Typed FAQ entries.

An entry is what one caller question maps to: the words the bot speaks and the
action it takes. Validation lives here so that every way of getting entries
(YAML files, the editor, spreadsheet import) applies the same rules.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

ID_PATTERN = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$")
MAX_ANSWER_CHARS = 150  # phone-friendly: about 20 seconds of speech
MAX_ANSWER_SENTENCES = 4


class Action(StrEnum):
    """What the bot does when a caller asks about an entry."""

    ANSWER = "answer"  # speak the answer: general information, same for every caller
    REDIRECT = "redirect"  # another office handles it: say where, offer transfer
    TRANSFER = "transfer"  # the caller's own case is needed: hand over to staff


def placeholders(text: str) -> set[str]:
    """Names of the ``{placeholders}`` used in ``text``."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def count_sentences(text: str) -> int:
    """Number of spoken sentences: runs ending in 。！？ (or the end of the text)."""
    return len([s for s in re.split(r"[。！？!?]", text) if s.strip()])


class FaqEntry(BaseModel):
    """One FAQ entry as operators write it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Stable id, e.g. 'payment.lost-notice'")
    title: str = Field(min_length=1, description="Short spoken topic name")
    action: Action
    questions: list[str] = Field(min_length=1, description="Example caller phrasings")
    keywords: list[str] = Field(default_factory=list)
    answer: str = Field(min_length=1, description="Spoken answer, may hold {placeholders}")
    followup: str | None = None
    tags: list[str] = Field(default_factory=list)
    revision: int = Field(default=1, ge=1)
    updated: dt.date | None = None

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not ID_PATTERN.match(value):
            raise ValueError("must be lowercase ascii words joined by '.' or '-'")
        return value

    @field_validator("questions", "keywords", "tags")
    @classmethod
    def _no_blank_items(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value]
        if any(not v for v in cleaned):
            raise ValueError("must not contain empty items")
        return cleaned

    @field_validator("title", "answer")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("must not be empty")
        return value


class FaqFile(BaseModel):
    """The content of one FAQ YAML file."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(min_length=1)
    entries: list[FaqEntry] = Field(min_length=1)
