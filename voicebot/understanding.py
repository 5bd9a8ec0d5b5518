"""Understanding one caller utterance: FAQ + matcher + decision policy, loaded once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from faq.city import load_city
from faq.matcher import Match, Matcher
from faq.store import Faq, load_faq
from voicebot.config import Settings
from voicebot.policy import Decision, decide


@dataclass
class Understanding:
    """What the bot knows (the FAQ) and how it reads callers (matcher and thresholds)."""

    faq: Faq
    matcher: Matcher
    settings: Settings

    @classmethod
    def load(cls, settings: Settings, faq_dir: Path | None = None) -> Understanding:
        city = load_city(settings.faq.city_file)
        faq = load_faq(faq_dir or settings.faq.directory, city=city)
        return cls(faq=faq, matcher=Matcher(faq), settings=settings)

    def match(self, text: str) -> Match:
        return self.matcher.match(text)

    def understand(self, text: str) -> tuple[Match, Decision]:
        """Match ``text`` and decide what to do with it."""
        match = self.matcher.match(text)
        return match, decide(match, self.faq, self.settings.thresholds)
