"""Loading the FAQ from its YAML files, all or nothing.

Operators edit these files by hand, so every problem is reported with the file,
the entry and the field, and a file with any problem contributes nothing: a
half-loaded FAQ would answer some questions from an old or broken state.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from faq.city import CityConfig, load_city
from faq.model import (
    MAX_ANSWER_CHARS,
    MAX_ANSWER_SENTENCES,
    Action,
    FaqEntry,
    FaqFile,
    count_sentences,
    placeholders,
)

FAQ_DIR_ENV = "VOICEBOT_FAQ_DIR"
NON_FAQ_FILES = {"city.yaml", "synonyms.yaml"}
NOT_BARE_PLACEHOLDER = "placeholder must be a bare {name}"


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    """``text`` with each bare ``{name}`` replaced by ``values[name]`` (``{{``/``}}`` are braces).

    Answers are edited on the web, so ``str.format_map`` must never see them: a format
    spec such as ``{office_hours:>2000000000}`` would allocate gigabytes in the process
    answering calls. Here the result is at most the text plus one value per placeholder.
    Raises ValueError for any placeholder with a spec, conversion, attribute or index,
    KeyError for an unknown name.
    """
    parts: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(text):
        parts.append(literal)
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"{NOT_BARE_PLACEHOLDER}: {{{written}}}")
        parts.append(str(values[name]))
    return "".join(parts)


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an FAQ file, located as precisely as we can."""

    file: str
    message: str
    entry: str | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        parts = [where]
        if self.entry:
            parts.append(f"entry '{self.entry}'")
        if self.field:
            parts.append(f"field '{self.field}'")
        return ": ".join([", ".join(parts), self.message])


class FaqLoadError(ValueError):
    """The FAQ could not be loaded; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(
            f"FAQ not loaded: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems)
        )


@dataclass
class Faq:
    """The loaded FAQ: entries by id, plus the city facts their answers refer to."""

    entries: list[FaqEntry]
    city: CityConfig
    categories: dict[str, str] = field(default_factory=dict)  # entry id -> category
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.entries}

    def __iter__(self) -> Iterator[FaqEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, entry_id: str) -> FaqEntry | None:
        return self._by_id.get(entry_id)

    def __getitem__(self, entry_id: str) -> FaqEntry:
        return self._by_id[entry_id]

    def answer_text(self, entry: FaqEntry | str) -> str:
        """The answer as spoken, with the city's facts filled in."""
        e = self[entry] if isinstance(entry, str) else entry
        return fill_placeholders(e.answer, self.city.values())


def default_faq_dir() -> Path:
    """The FAQ shipped with the package, unless ``$VOICEBOT_FAQ_DIR`` names another."""
    env = os.environ.get(FAQ_DIR_ENV)
    return Path(env) if env else Path(str(resources.files("faq") / "data"))


def _entry_lines(text: str) -> list[int]:
    """1-based line of each item under ``entries:``, for error messages."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "entries" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _validation_problems(
    name: str, raw: dict, exc: ValidationError, lines: list[int]
) -> list[Problem]:
    problems = []
    entries = raw.get("entries") if isinstance(raw.get("entries"), list) else []
    for err in exc.errors():
        loc = list(err["loc"])
        entry = line = None
        if len(loc) >= 2 and loc[0] == "entries" and isinstance(loc[1], int):
            idx = loc[1]
            item = entries[idx] if idx < len(entries) else None
            entry_id = item.get("id") if isinstance(item, dict) else None
            entry = str(entry_id) if entry_id else f"#{idx + 1}"
            line = lines[idx] if idx < len(lines) else None
            loc = loc[2:]
        fld = ".".join(str(p) for p in loc) or None
        msg = err["msg"] if err["type"] != "extra_forbidden" else "unknown field"
        problems.append(Problem(name, msg, entry=entry, field=fld, line=line))
    return problems


def parse_faq_file(
    name: str, text: str, city: CityConfig
) -> tuple[FaqFile | None, list[Problem], list[Problem]]:
    """Parse one FAQ file's text. Returns (file or None, problems, warnings)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(name, f"YAML syntax error: {reason}", line=line)], []
    if not isinstance(raw, dict):
        return None, [Problem(name, "must be a mapping with 'category' and 'entries'")], []
    lines = _entry_lines(text)
    try:
        parsed = FaqFile.model_validate(raw)
    except ValidationError as exc:
        return None, _validation_problems(name, raw, exc, lines), []

    problems: list[Problem] = []
    warnings: list[Problem] = []
    known = set(city.values())
    seen: set[str] = set()
    for idx, e in enumerate(parsed.entries):
        line = lines[idx] if idx < len(lines) else None
        if e.id in seen:
            problems.append(Problem(name, "duplicate id in this file", e.id, "id", line))
        seen.add(e.id)
        for fld in ("answer", "followup"):
            text_value = getattr(e, fld)
            if not text_value:
                continue
            try:
                # Spec, conversion or attribute first, so "{office_hours:>9}" is not
                # reported as an unknown name "office_hours:>9".
                fill_placeholders(text_value, dict.fromkeys(placeholders(text_value), ""))
                unknown = placeholders(text_value) - known
            except ValueError as exc:
                message = str(exc)
                if not message.startswith(NOT_BARE_PLACEHOLDER):
                    message = f"bad placeholder syntax: {message}"
                problems.append(Problem(name, message, e.id, fld, line))
                continue
            if unknown:
                problems.append(
                    Problem(
                        name,
                        f"unknown placeholder(s): {', '.join(sorted(unknown))}",
                        e.id,
                        fld,
                        line,
                    )
                )
                continue
            spoken = fill_placeholders(text_value, city.values())
            if fld == "answer":
                if count_sentences(spoken) > MAX_ANSWER_SENTENCES:
                    problems.append(
                        Problem(
                            name, f"more than {MAX_ANSWER_SENTENCES} sentences", e.id, fld, line
                        )
                    )
                if len(spoken) > MAX_ANSWER_CHARS:
                    warnings.append(
                        Problem(
                            name,
                            f"{len(spoken)} characters spoken (aim ≤ {MAX_ANSWER_CHARS})",
                            e.id,
                            fld,
                            line,
                        )
                    )
    return (None if problems else parsed), problems, warnings


def load_synonyms(path: Path) -> dict[str, list[str]]:
    """Canonical word -> variants. A missing file means no synonyms."""
    if not path.exists():
        return {}
    name = path.name
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise FaqLoadError(
            [
                Problem(
                    name,
                    f"YAML syntax error: {getattr(exc, 'problem', exc)}",
                    line=mark.line + 1 if mark else None,
                )
            ]
        ) from exc
    groups = raw.get("synonyms", raw) if isinstance(raw, dict) else None
    if not isinstance(groups, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) and x for x in v)
        for k, v in groups.items()
    ):
        raise FaqLoadError([Problem(name, "must map each canonical word to a list of variants")])
    return {k: list(v) for k, v in groups.items()}


def load_faq(
    directory: Path | str | None = None,
    city: CityConfig | None = None,
    files: Iterable[Path] | None = None,
) -> Faq:
    """Load every FAQ file of ``directory``. Raises FaqLoadError listing all problems."""
    folder = Path(directory) if directory else default_faq_dir()
    city = city or load_city()
    paths = (
        sorted(files)
        if files is not None
        else sorted(p for p in folder.glob("*.yaml") if p.name not in NON_FAQ_FILES)
    )
    if not paths:
        raise FaqLoadError([Problem(str(folder), "no FAQ files (*.yaml) found")])
    problems: list[Problem] = []
    warnings: list[Problem] = []
    entries: list[FaqEntry] = []
    categories: dict[str, str] = {}
    origin: dict[str, str] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(path.name, f"cannot read: {exc}"))
            continue
        parsed, file_problems, file_warnings = parse_faq_file(path.name, text, city)
        problems += file_problems
        warnings += file_warnings
        if parsed is None:
            continue
        for e in parsed.entries:
            if e.id in origin:
                problems.append(
                    Problem(path.name, f"id already defined in {origin[e.id]}", e.id, "id")
                )
                continue
            origin[e.id] = path.name
            categories[e.id] = parsed.category
            entries.append(e)
    synonyms = load_synonyms(folder / "synonyms.yaml")
    if problems:
        raise FaqLoadError(problems)
    return Faq(
        entries=entries, city=city, categories=categories, synonyms=synonyms, warnings=warnings
    )


__all__ = [
    "Action",
    "Faq",
    "FaqEntry",
    "FaqLoadError",
    "Problem",
    "default_faq_dir",
    "fill_placeholders",
    "load_faq",
]
