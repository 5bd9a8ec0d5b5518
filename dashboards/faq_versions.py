"""FAQ editing with a draft and immutable published versions.

The FAQ the bot speaks from is always a *published version*: a full snapshot of every
entry, numbered 1, 2, 3, … and never changed afterwards. Version 1 is the FAQ the bot
was shipped or configured with. Operators edit a single shared *draft* (a full snapshot
too); publishing turns the draft into the next version, writes it as YAML files into
``<data_dir>/faq/current/`` (the folder the bot loads on restart) and then the web app
awaits ``Services.on_faq_published`` so that the running bot switches over. A rollback
publishes an old snapshot again as a new version, so history only ever grows.

Every entry is validated by ``faq.store``'s own rules (``parse_faq_file`` for one entry,
``load_faq`` for a whole snapshot): the editor, spreadsheet import and the YAML files
cannot disagree about what a valid entry is.

For other pages (the unanswered-questions page)::

    add_example_question(db, "payment.lost-notice", "納付書をなくしました", user)
    create_entry_draft(db, title=..., questions=[...], answer=..., category=..., user=user)

Both change the draft (an operator publishes later) and raise ``FaqValidationError``
with Japanese problem texts when the result would not be a valid entry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import DateTime, Integer, String, Text, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from dashboards import audit
from dashboards.db import Base, Database
from faq.city import CityConfig, load_city
from faq.model import FaqEntry
from faq.store import (
    NON_FAQ_FILES,
    Faq,
    FaqLoadError,
    Problem,
    default_faq_dir,
    load_faq,
    load_synonyms,
    parse_faq_file,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from dashboards.accounts import User
    from dashboards.services import Services
    from voicebot.config import Settings
    from voicebot.understanding import Understanding

log = logging.getLogger(__name__)

CONTENT_FIELDS = (
    "category",
    "id",
    "title",
    "action",
    "questions",
    "keywords",
    "answer",
    "followup",
    "tags",
)
FIELD_LABELS = {
    "category": "カテゴリ",
    "id": "ID",
    "title": "タイトル",
    "action": "対応",
    "questions": "質問例",
    "keywords": "キーワード",
    "answer": "回答",
    "followup": "補足",
    "tags": "タグ",
    "revision": "改訂番号",
    "updated": "更新日",
}
ACTION_LABELS = {"answer": "回答する", "redirect": "他の窓口を案内", "transfer": "職員につなぐ"}
KIND_LABELS = {"initial": "初期版", "publish": "公開", "rollback": "差し戻し"}
LOCAL_TZ = ZoneInfo("Asia/Tokyo")
MATCHER_CACHE_SIZE = 3


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# --- tables ------------------------------------------------------------------------------


class FaqVersion(Base):
    """One published FAQ: an immutable snapshot of every entry."""

    __tablename__ = "faq_versions"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # initial, publish, rollback
    comment: Mapped[str] = mapped_column(String(500), default="")
    based_on: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entry_count: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[str] = mapped_column(Text)  # JSON list of entry dicts with category

    def entries(self) -> list[dict[str, Any]]:
        return json.loads(self.snapshot)

    def summary(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "created_at": self.created_at.isoformat() + "Z",
            "created_by": self.created_by,
            "kind": self.kind,
            "kind_label": KIND_LABELS.get(self.kind, self.kind),
            "comment": self.comment,
            "based_on": self.based_on,
            "entry_count": self.entry_count,
        }


class NodeFaqVersion(Base):
    """The FAQ version each node's bot speaks now, written by the node itself, so that the
    operators see on the version page whether every call node has switched."""

    __tablename__ = "node_faq_versions"

    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(Integer)
    switched_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)  # last check


class FaqDraft(Base):
    """The one shared draft (row id 1): what operators are editing, not yet published."""

    __tablename__ = "faq_draft"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_version: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)  # bumps on every change
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    snapshot: Mapped[str] = mapped_column(Text)


class FaqDraftChange(Base):
    """Which entries one draft revision changed: tells an import what was edited since its
    export (a new table, so ``create_all`` adds it to an existing database)."""

    __tablename__ = "faq_draft_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    revision: Mapped[int] = mapped_column(Integer, index=True)
    entry_id: Mapped[str] = mapped_column(String(200))


DRAFT_HISTORY_REVISIONS = 1000  # revisions whose changed entries are remembered


# --- errors and validation ------------------------------------------------------------------


@dataclass(frozen=True)
class EntryProblem:
    """A problem with one entry, in Japanese for the editor (and the English original)."""

    message: str
    field: str | None = None
    entry: str | None = None
    original: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "field": self.field,
            "field_label": FIELD_LABELS.get(self.field or "", self.field),
            "message": self.message,
        }

    def __str__(self) -> str:
        label = FIELD_LABELS.get(self.field or "", self.field or "")
        return f"{label}: {self.message}" if label else self.message


class FaqValidationError(ValueError):
    """The change would make an invalid entry or FAQ; nothing was changed."""

    def __init__(self, problems: list[EntryProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class FaqNotFound(LookupError):
    """No such entry or version."""


class FaqConflict(RuntimeError):
    """Someone else changed the same thing first, or there is nothing to publish."""


class FaqImportConflict(FaqConflict):
    """An import made from an older draft would overwrite entries edited since its export.

    ``entries`` lists (id, title) of those entries, titles as the current draft has them.
    """

    def __init__(self, entries: list[tuple[str, str]], base_revision: int | None, revision: int):
        self.entries = entries
        self.base_revision = base_revision  # None: the file does not say (no such column)
        self.revision = revision
        shown = "、".join(f"「{title}」（{entry_id}）" for entry_id, title in entries[:20])
        more = f" ほか{len(entries) - 20}件" if len(entries) > 20 else ""
        unknown = (
            "（このファイルには「書き出し時の下書き番号」の列がないため、"
            "どの下書きから作られたか確かめられません。）"
            if base_revision is None
            else ""
        )
        super().__init__(
            "このファイルを書き出した後に、次の項目が下書きで変更されています: "
            f"{shown}{more}。取り込むとこれらの変更が失われます。"
            "最新の下書きを書き出して編集し直すか、上書きしてよい場合は"
            "「書き出し後の変更を上書きする」を選んで取り込んでください。" + unknown
        )


_MESSAGES = [
    ("Field required", "入力してください。"),
    ("String should have at least 1 character", "入力してください。"),
    ("must not be empty", "入力してください。"),
    ("List should have at least 1 item", "1つ以上入力してください。"),
    ("must not contain empty items", "空の行は入れないでください。"),
    (
        "must be lowercase ascii words",
        "IDは半角英小文字・数字を「.」または「-」でつないだ形にしてください"
        "（例: payment.lost-notice）。",
    ),
    (
        "Input should be 'answer', 'redirect' or 'transfer'",
        "「回答する」「他の窓口を案内」「職員につなぐ」のいずれかを選んでください。",
    ),
    ("unknown placeholder(s)", "不明な差し込み項目があります: "),
    (
        "placeholder must be a bare",
        "差し込み項目は {office_hours} のように名前だけを書いてください"
        "（「:」「!」「.」「[ ]」などは使えません）。",
    ),
    (
        "bad placeholder syntax",
        "差し込み項目の書き方が正しくありません（{ } の対応を確認してください）。",
    ),
    ("more than", "文が多すぎます。4文以内にしてください。"),
    ("duplicate id", "IDが重複しています。"),
    ("id already defined", "IDが重複しています。"),
    ("Input should be a valid string", "文字列で入力してください。"),
    ("Input should be a valid list", "一覧の形で入力してください。"),
    ("Input should be a valid integer", "整数で入力してください。"),
    ("Input should be a valid date", "日付（例: 2025-04-01）で入力してください。"),
    ("unknown field", "不明な項目です。"),
    ("characters spoken", "読み上げる文字数が多めです（150文字以内をおすすめします）: "),
]


def japanese_message(message: str) -> str:
    """The faq.store / pydantic message in Japanese (the original if not known)."""
    for english, japanese in _MESSAGES:
        if english in message:
            if japanese.endswith(": "):
                detail = message.split(":", 1)[1].strip() if ":" in message else message
                return japanese + detail.split(" ")[0]
            return japanese
    return message


def _to_problem(p: Problem, entry_id: str | None = None) -> EntryProblem:
    fld = p.field.split(".")[0] if p.field else None
    return EntryProblem(
        message=japanese_message(p.message),
        field=fld,
        entry=p.entry if p.entry and not p.entry.startswith("#") else entry_id,
        original=p.message,
    )


def _entry_yaml(category: str, entries: list[dict[str, Any]]) -> str:
    body = [{k: v for k, v in e.items() if k != "category"} for e in entries]
    return yaml.safe_dump(
        {"category": category, "entries": body}, allow_unicode=True, sort_keys=False
    )


def validate_entry(
    data: dict[str, Any], city: CityConfig
) -> tuple[dict[str, Any] | None, list[EntryProblem], list[EntryProblem]]:
    """Check one entry by faq.store's rules: (normalised entry or None, problems, warnings).

    ``data`` has the FaqEntry fields plus ``category``. The normalised entry is what the
    YAML loader would produce (whitespace collapsed, lists stripped).
    """
    category = data.get("category")
    entry_id = data.get("id") if isinstance(data.get("id"), str) else None
    body = {k: v for k, v in data.items() if k != "category" and v is not None}
    try:
        text = _entry_yaml(category if isinstance(category, str) else "", [body])
    except yaml.YAMLError as exc:  # unrepresentable values
        return None, [EntryProblem(f"読み取れない値があります: {exc}", entry=entry_id)], []
    parsed, problems, warnings = parse_faq_file("entry", text, city)
    if not isinstance(category, str) or not category.strip():
        problems = [
            *[p for p in problems if p.field != "category"],
            Problem("entry", "must not be empty", field="category"),
        ]
        parsed = None
    out_problems = [_to_problem(p, entry_id) for p in problems]
    out_warnings = [_to_problem(p, entry_id) for p in warnings]
    if parsed is None:
        return None, out_problems, out_warnings
    entry = parsed.entries[0]
    return _entry_dict(category.strip(), entry), out_problems, out_warnings


def _entry_dict(category: str, entry: FaqEntry) -> dict[str, Any]:
    d = entry.model_dump(mode="json")
    if d.get("followup") is None:
        d.pop("followup", None)
    if d.get("updated") is None:
        d.pop("updated", None)
    return {"category": category, **d}


def write_faq_files(entries: list[dict[str, Any]], folder: Path, synonyms: Path | None) -> None:
    """The snapshot as FAQ YAML files, one per category, in ``folder`` (must exist)."""
    groups: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for e in entries:
        groups.setdefault(e["category"], []).append(e)
    used: set[str] = set()
    for i, (category, items) in enumerate(groups.items(), start=1):
        prefixes = [str(e["id"]).split(".")[0] for e in items]
        stem = max(set(prefixes), key=prefixes.count)
        if stem in used or f"{stem}.yaml" in NON_FAQ_FILES or not stem:
            stem = f"category-{i:02d}"
        used.add(stem)
        header = "# Published from the web editor; edit there (changes here are overwritten).\n"
        (folder / f"{stem}.yaml").write_text(header + _entry_yaml(category, items), "utf-8")
    if synonyms is not None and synonyms.exists():
        shutil.copyfile(synonyms, folder / "synonyms.yaml")


def check_snapshot(
    entries: list[dict[str, Any]], city: CityConfig, synonyms: Path | None
) -> tuple[Faq | None, list[EntryProblem]]:
    """Load a whole snapshot exactly as the bot would (``load_faq``): (Faq, problems)."""
    if not entries:
        return None, [EntryProblem("FAQが空です。少なくとも1件の項目が必要です。")]
    with tempfile.TemporaryDirectory(prefix="faq-check-") as tmp:
        folder = Path(tmp)
        write_faq_files(entries, folder, synonyms)
        try:
            return load_faq(folder, city=city), []
        except FaqLoadError as exc:
            return None, [_to_problem(p) for p in exc.problems]


# --- diff ----------------------------------------------------------------------------------


def diff_snapshots(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per entry and per field: what changed from ``old`` to ``new`` (content fields only)."""
    old_by_id = {e["id"]: e for e in old}
    new_by_id = {e["id"]: e for e in new}
    changes: list[dict[str, Any]] = []
    for e in new:
        before = old_by_id.get(e["id"])
        if before is None:
            changes.append(
                {"id": e["id"], "title": e.get("title"), "change": "added", "fields": []}
            )
            continue
        fields = [
            {
                "field": f,
                "label": FIELD_LABELS[f],
                "before": before.get(f),
                "after": e.get(f),
            }
            for f in CONTENT_FIELDS
            if _norm(before.get(f)) != _norm(e.get(f))
        ]
        if fields:
            changes.append(
                {"id": e["id"], "title": e.get("title"), "change": "changed", "fields": fields}
            )
    for e in old:
        if e["id"] not in new_by_id:
            changes.append(
                {"id": e["id"], "title": e.get("title"), "change": "removed", "fields": []}
            )
    return changes


def _norm(value: Any) -> Any:
    return [] if value is None or value == [] else value


# --- the store -----------------------------------------------------------------------------


@dataclass
class Draft:
    base_version: int
    revision: int
    updated_at: dt.datetime
    updated_by: str
    entries: list[dict[str, Any]]
    changes: list[dict[str, Any]] = field(default_factory=list)  # vs the published version

    def get(self, entry_id: str) -> dict[str, Any] | None:
        return next((e for e in self.entries if e["id"] == entry_id), None)


def _stamp(entry: dict[str, Any], published: dict[str, Any] | None) -> None:
    """Revision metadata: unchanged content keeps the published stamp, changes bump it."""
    if published is not None and entry_hash(published) == entry_hash(entry):
        entry["revision"] = published.get("revision", 1)
        entry.pop("updated", None)
        if published.get("updated"):
            entry["updated"] = published["updated"]
    else:
        entry["revision"] = (published or {}).get("revision", 0) + 1
        entry["updated"] = _today()


def _username(user: User | str | None) -> str:
    if user is None:
        return "system"
    return user if isinstance(user, str) else user.username


def _today() -> str:
    return dt.datetime.now(LOCAL_TZ).date().isoformat()


def entry_hash(entry: dict[str, Any] | None) -> str:
    """A short fingerprint of an entry's content, to detect concurrent edits."""
    import hashlib

    if entry is None:
        return ""
    content = {k: entry.get(k) for k in CONTENT_FIELDS}
    raw = json.dumps(content, ensure_ascii=False, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


class FaqVersions:
    """Draft, versions, publishing and matching for one database and data directory."""

    _draft_lock = threading.Lock()  # serialises read-modify-write of the draft in-process

    def __init__(
        self,
        db: Database,
        data_dir: Path | None = None,
        city: CityConfig | None = None,
        source_dir: Path | None = None,
        bot_settings: Settings | None = None,
    ):
        self.db = db
        self.data_dir = data_dir
        self.city = city or load_city()
        self.source_dir = Path(source_dir) if source_dir else default_faq_dir()
        self.bot_settings = bot_settings
        self._matchers: OrderedDict[tuple[str, int], Understanding] = OrderedDict()
        self._matcher_lock = threading.Lock()

    @classmethod
    def for_services(cls, services: Services) -> FaqVersions:
        """The store of a running app: the bot's city facts and FAQ folder when present."""
        bot = services.bot
        if bot is not None:
            settings = bot.settings
            city = bot.understanding.faq.city
        else:
            from voicebot.config import Settings

            settings = Settings()
            city = load_city(settings.faq.city_file)
        return cls(
            services.db,
            data_dir=services.settings.data_dir,
            city=city,
            source_dir=settings.faq.directory,
            bot_settings=settings,
        )

    @property
    def current_dir(self) -> Path | None:
        """Where the published FAQ's YAML files are written (the bot loads them)."""
        return self.data_dir / "faq" / "current" if self.data_dir is not None else None

    @property
    def synonyms_path(self) -> Path:
        return self.source_dir / "synonyms.yaml"

    # versions ---------------------------------------------------------------------------

    def ensure_initial_version(self) -> None:
        """On first start: the configured FAQ becomes version 1 and the draft."""
        with self.db.session() as s:
            if s.scalar(select(FaqVersion.number).limit(1)) is not None:
                return
        faq = load_faq(self.source_dir, city=self.city)
        entries = [_entry_dict(faq.categories[e.id], e) for e in faq]
        try:
            with self._draft_lock, self.db.session() as s:
                if s.scalar(select(FaqVersion.number).limit(1)) is not None:
                    return  # another process was first
                s.add(self._version_row(1, "system", "initial", "初期のFAQ", None, entries))
                s.add(
                    FaqDraft(
                        id=1,
                        base_version=1,
                        revision=1,
                        updated_at=utcnow(),
                        updated_by="system",
                        snapshot=json.dumps(entries, ensure_ascii=False),
                    )
                )
        except IntegrityError:
            return  # another node sharing the database was first, at the same moment
        self._write_current(entries)
        log.info("FAQ version 1 created from %s (%d entries)", self.source_dir, len(entries))

    def _version_row(
        self,
        number: int,
        user: str,
        kind: str,
        comment: str,
        based_on: int | None,
        entries: list[dict[str, Any]],
    ) -> FaqVersion:
        return FaqVersion(
            number=number,
            created_at=utcnow(),
            created_by=user,
            kind=kind,
            comment=comment[:500],
            based_on=based_on,
            entry_count=len(entries),
            snapshot=json.dumps(entries, ensure_ascii=False),
        )

    def versions(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(select(FaqVersion).order_by(FaqVersion.number.desc()))
            return [r.summary() for r in rows]

    def version(self, number: int) -> FaqVersion:
        with self.db.session() as s:
            row = s.get(FaqVersion, number)
        if row is None:
            raise FaqNotFound(f"版{number}は見つかりません。")
        return row

    def published_number(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.max(FaqVersion.number))) or 0)

    def published(self) -> FaqVersion:
        return self.version(self.published_number())

    def entries_of(self, which: str | int) -> list[dict[str, Any]]:
        """Entries of ``"draft"``, ``"published"`` or a version number."""
        if which == "draft":
            return self.draft().entries
        if which == "published":
            return self.published().entries()
        return self.version(int(which)).entries()

    # draft ------------------------------------------------------------------------------

    def draft(self) -> Draft:
        with self.db.session() as s:
            row = s.get(FaqDraft, 1)
            if row is None:
                raise FaqNotFound("下書きがありません。")
            published = s.get(FaqVersion, row.base_version)
        entries = json.loads(row.snapshot)
        base = published.entries() if published is not None else []
        return Draft(
            base_version=row.base_version,
            revision=row.revision,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
            entries=entries,
            changes=diff_snapshots(base, entries),
        )

    def _store_draft(
        self,
        s: Session,
        expected_revision: int,
        entries: list[dict[str, Any]],
        user: str,
        base_version: int | None = None,
    ) -> int:
        values: dict[str, Any] = {
            "snapshot": json.dumps(entries, ensure_ascii=False),
            "revision": expected_revision + 1,
            "updated_at": utcnow(),
            "updated_by": user,
        }
        if base_version is not None:
            values["base_version"] = base_version
        current = s.get(FaqDraft, 1)
        before = json.loads(current.snapshot) if current is not None else []
        result = s.execute(
            update(FaqDraft)
            .where(FaqDraft.id == 1, FaqDraft.revision == expected_revision)
            .values(**values)
        )
        if result.rowcount != 1:
            raise FaqConflict("ほかの方が同時に下書きを変更しました。もう一度お試しください。")
        revision = expected_revision + 1
        old = {e["id"]: entry_hash(e) for e in before}
        new = {e["id"]: entry_hash(e) for e in entries}
        changed = sorted(i for i in old.keys() | new.keys() if old.get(i) != new.get(i))
        # A revision that changed no entry still gets a row (id ""), so that the history
        # has no gaps and a gap means "made before the history was kept".
        s.add_all(FaqDraftChange(revision=revision, entry_id=i) for i in changed or [""])
        s.execute(
            delete(FaqDraftChange).where(
                FaqDraftChange.revision <= revision - DRAFT_HISTORY_REVISIONS
            )
        )
        return revision

    def _changed_since(self, s: Session, base_revision: int, revision: int) -> set[str] | None:
        """Entry ids changed in the draft after ``base_revision``; None if not remembered."""
        if base_revision > revision:
            return None  # not this draft's history (another installation, or edited by hand)
        if base_revision <= revision - DRAFT_HISTORY_REVISIONS:
            return None
        oldest = s.scalar(select(func.min(FaqDraftChange.revision)))
        if oldest is None or oldest > base_revision + 1:
            return None  # revisions made before the history was kept
        rows = s.scalars(
            select(FaqDraftChange.entry_id).where(FaqDraftChange.revision > base_revision)
        )
        return {i for i in rows if i}

    def _published_entry(self, s: Session, base_version: int, entry_id: str) -> dict | None:
        row = s.get(FaqVersion, base_version)
        if row is None:
            return None
        return next((e for e in row.entries() if e["id"] == entry_id), None)

    def save_entry(
        self,
        data: dict[str, Any],
        user: User | str | None,
        entry_id: str | None = None,
        expected_hash: str | None = None,
        client: str = "",
    ) -> tuple[dict[str, Any], list[EntryProblem]]:
        """Create (``entry_id`` None) or replace an entry in the draft.

        Returns (saved entry, warnings). Raises FaqValidationError, FaqNotFound, or
        FaqConflict (the entry changed since ``expected_hash`` was read / id taken).
        """
        name = _username(user)
        entry, problems, warnings = validate_entry(data, self.city)
        if entry is None:
            raise FaqValidationError(problems)
        with self._draft_lock, self.db.session() as s:
            row = s.get(FaqDraft, 1)
            if row is None:
                raise FaqNotFound("下書きがありません。")
            entries = json.loads(row.snapshot)
            index = {e["id"]: i for i, e in enumerate(entries)}
            if entry_id is None:
                if entry["id"] in index:
                    raise FaqValidationError(
                        [EntryProblem("このIDはすでに使われています。", "id", entry["id"])]
                    )
                before = None
            else:
                if entry_id not in index:
                    raise FaqNotFound(f"項目「{entry_id}」は見つかりません。")
                before = entries[index[entry_id]]
                if expected_hash and expected_hash != entry_hash(before):
                    raise FaqConflict(
                        "編集中に、ほかの方がこの項目を変更しました。"
                        "最新の内容を読み込み直してから、もう一度編集してください。"
                    )
                if entry["id"] != entry_id and entry["id"] in index:
                    raise FaqValidationError(
                        [EntryProblem("このIDはすでに使われています。", "id", entry["id"])]
                    )
            _stamp(entry, self._published_entry(s, row.base_version, entry_id or entry["id"]))
            if before is None:
                entries.append(entry)
            else:
                entries[index[entry_id]] = entry  # type: ignore[index]
            self._store_draft(s, row.revision, entries, name)
            audit.record(
                None,
                name,
                "faq_create" if before is None else "faq_update",
                target=entry["id"],
                summary=f"「{entry['title']}」を" + ("追加" if before is None else "編集"),
                before=before,
                after=entry,
                client=client,
                session=s,
            )
        return entry, warnings

    def delete_entry(self, entry_id: str, user: User | str | None, client: str = "") -> None:
        name = _username(user)
        with self._draft_lock, self.db.session() as s:
            row = s.get(FaqDraft, 1)
            if row is None:
                raise FaqNotFound("下書きがありません。")
            entries = json.loads(row.snapshot)
            before = next((e for e in entries if e["id"] == entry_id), None)
            if before is None:
                raise FaqNotFound(f"項目「{entry_id}」は見つかりません。")
            if len(entries) == 1:
                raise FaqValidationError([EntryProblem("最後の1件は削除できません。")])
            entries = [e for e in entries if e["id"] != entry_id]
            self._store_draft(s, row.revision, entries, name)
            audit.record(
                None,
                name,
                "faq_delete",
                target=entry_id,
                summary=f"「{before['title']}」を削除",
                before=before,
                client=client,
                session=s,
            )

    def replace_draft(
        self,
        entries: list[dict[str, Any]],
        user: User | str | None,
        source: str,
        client: str = "",
        base_revision: int | None = None,
        overwrite: bool = False,
    ) -> Draft:
        """Make ``entries`` (already validated, e.g. an import) the whole draft.

        ``base_revision`` is the draft revision the file was exported from. If entries
        were changed in the draft since then and the file would change them again (or
        drop them), FaqImportConflict names them and nothing is imported, unless
        ``overwrite`` says the operator has chosen to overwrite them. A file that does not
        say (``None``: a sheet made by hand, or the column deleted) could be older than any
        edit, so every entry it would change counts, as for a base older than the history.
        """
        name = _username(user)
        faq, problems = check_snapshot(entries, self.city, self.synonyms_path)
        if faq is None:
            raise FaqValidationError(problems)
        with self._draft_lock, self.db.session() as s:
            row = s.get(FaqDraft, 1)
            if row is None:
                raise FaqNotFound("下書きがありません。")
            old = json.loads(row.snapshot)
            if base_revision != row.revision and not overwrite:
                self._check_import_base(s, old, entries, base_revision, row.revision)
            base = s.get(FaqVersion, row.base_version)
            published = {e["id"]: e for e in base.entries()} if base is not None else {}
            entries = [dict(e) for e in entries]
            for e in entries:
                _stamp(e, published.get(e["id"]))
            self._store_draft(s, row.revision, entries, name)
            changes = diff_snapshots(old, entries)
            audit.record(
                None,
                name,
                "faq_import",
                target=source[:200],
                summary=f"{len(entries)}件を取り込み（変更{len(changes)}件）",
                before={"entries": len(old)},
                after={"entries": len(entries), "changes": _change_summary(changes)},
                client=client,
                session=s,
            )
        return self.draft()

    def _check_import_base(
        self,
        s: Session,
        current: list[dict[str, Any]],
        imported: list[dict[str, Any]],
        base_revision: int | None,
        revision: int,
    ) -> None:
        """FaqImportConflict if the import would undo edits made after its export."""
        now = {e["id"]: e for e in current}
        new = {e["id"]: e for e in imported}
        changed = None if base_revision is None else self._changed_since(s, base_revision, revision)
        if changed is None:  # history unknown: every entry the import would change counts
            changed = set(now) | set(new)
        # Edited, added or deleted since the export, and the file says otherwise.
        lost = sorted(i for i in changed if entry_hash(now.get(i)) != entry_hash(new.get(i)))
        if lost:
            titles = [(i, str((now.get(i) or new.get(i) or {}).get("title", ""))) for i in lost]
            raise FaqImportConflict(titles, base_revision, revision)

    def discard_draft(self, user: User | str | None, client: str = "") -> None:
        """Throw away unpublished changes: the draft becomes the published version again."""
        name = _username(user)
        with self._draft_lock, self.db.session() as s:
            row = s.get(FaqDraft, 1)
            number = int(s.scalar(select(func.max(FaqVersion.number))) or 0)
            published = s.get(FaqVersion, number)
            if row is None or published is None:
                raise FaqNotFound("下書きがありません。")
            changes = diff_snapshots(published.entries(), json.loads(row.snapshot))
            self._store_draft(s, row.revision, published.entries(), name, base_version=number)
            audit.record(
                None,
                name,
                "faq_discard",
                target=f"draft→v{number}",
                summary=f"未公開の変更{len(changes)}件を破棄",
                before={"changes": _change_summary(changes)},
                client=client,
                session=s,
            )

    # publishing -------------------------------------------------------------------------

    def publish(
        self, user: User | str | None, comment: str = "", client: str = ""
    ) -> tuple[dict[str, Any], Faq]:
        """Publish the draft as the next version; returns (version summary, loaded Faq)."""
        name = _username(user)
        draft = self.draft()
        if not draft.changes and draft.base_version == self.published_number():
            raise FaqConflict("公開する変更がありません。")
        return self._publish_entries(
            draft.entries,
            name,
            "publish",
            comment or _change_line(draft.changes),
            based_on=draft.base_version,
            expected_draft_revision=draft.revision,
            client=client,
            audit_action="faq_publish",
            changes=draft.changes,
        )

    def rollback(
        self, number: int, user: User | str | None, comment: str = "", client: str = ""
    ) -> tuple[dict[str, Any], Faq]:
        """Publish version ``number``'s snapshot again as a new version (draft reset to it)."""
        name = _username(user)
        old = self.version(number)
        current = self.published()
        changes = diff_snapshots(current.entries(), old.entries())
        return self._publish_entries(
            old.entries(),
            name,
            "rollback",
            comment or f"版{number}の内容に戻しました",
            based_on=number,
            expected_draft_revision=None,
            client=client,
            audit_action="faq_rollback",
            changes=changes,
        )

    def _publish_entries(
        self,
        entries: list[dict[str, Any]],
        user: str,
        kind: str,
        comment: str,
        based_on: int | None,
        expected_draft_revision: int | None,
        client: str,
        audit_action: str,
        changes: list[dict[str, Any]],
    ) -> tuple[dict[str, Any], Faq]:
        faq, problems = check_snapshot(entries, self.city, self.synonyms_path)
        if faq is None:
            raise FaqValidationError(problems)
        with self._draft_lock, self.db.session() as s:
            number = int(s.scalar(select(func.max(FaqVersion.number))) or 0) + 1
            row = self._version_row(number, user, kind, comment, based_on, entries)
            s.add(row)
            draft = s.get(FaqDraft, 1)
            if draft is None:
                raise FaqNotFound("下書きがありません。")
            revision = (
                draft.revision if expected_draft_revision is None else expected_draft_revision
            )
            self._store_draft(s, revision, entries, user, base_version=number)
            audit.record(
                None,
                user,
                audit_action,
                target=f"v{number}",
                summary=f"版{number}を公開: {comment}"[: audit.SUMMARY_MAX],
                before={"version": number - 1},
                after={"version": number, "changes": _change_summary(changes)},
                client=client,
                session=s,
            )
            summary = row.summary()
        # The files follow the database: a failed write is logged, and rewritten next time.
        try:
            self._write_current(entries)
        except OSError:
            log.exception("could not write the published FAQ to %s", self.current_dir)
        log.info("FAQ version %d published by %s (%s)", number, user, kind)
        return summary, faq

    def _write_current(self, entries: list[dict[str, Any]]) -> None:
        """Replace ``<data_dir>/faq/current`` in one rename (never half-written)."""
        target = self.current_dir
        if target is None:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        write_faq_files(entries, staging, self.synonyms_path)
        old = target.parent / f".old-{secrets.token_hex(4)}"
        if target.exists():
            target.rename(old)
        staging.rename(target)
        with contextlib.suppress(OSError):
            shutil.rmtree(old)

    # matching ---------------------------------------------------------------------------

    def faq_of(self, entries: list[dict[str, Any]]) -> Faq:
        """A Faq object (as load_faq builds it) from snapshot entries, without files."""
        items = [
            FaqEntry.model_validate({k: v for k, v in e.items() if k != "category"})
            for e in entries
        ]
        return Faq(
            entries=items,
            city=self.city,
            categories={e["id"]: e["category"] for e in entries},
            synonyms=load_synonyms(self.synonyms_path),
        )

    def understanding(self, which: str) -> Understanding:
        """Matcher + policy for the draft or the published FAQ, cached per version.

        Builds a matcher (about half a second): call off the event loop.
        """
        from faq.matcher import Matcher
        from voicebot.config import Settings
        from voicebot.understanding import Understanding

        if which == "draft":
            draft = self.draft()
            key, entries = ("draft", draft.revision), draft.entries
        else:
            version = self.published()
            key, entries = ("version", version.number), version.entries()
        with self._matcher_lock:
            cached = self._matchers.get(key)
            if cached is not None:
                self._matchers.move_to_end(key)
                return cached
        faq = self.faq_of(entries)
        made = Understanding(
            faq=faq, matcher=Matcher(faq), settings=self.bot_settings or Settings()
        )
        with self._matcher_lock:
            self._matchers[key] = made
            while len(self._matchers) > MATCHER_CACHE_SIZE:
                self._matchers.popitem(last=False)
        return made

    def try_question(
        self,
        text: str,
        which: str = "draft",
        limit: int = 5,
        now: Callable[[], dt.datetime] | None = None,
    ) -> dict[str, Any]:
        """What the bot would do with ``text`` on the draft or the published FAQ, and the
        words a caller asking it first would hear (the dialogue's, office hours and all:
        ``now`` gives the time, the clock by default)."""
        from voicebot.dialogue import Dialogue

        und = self.understanding(which)
        dialogue = Dialogue(und, now=now)
        dialogue.start()
        reply = dialogue.on_utterance(text)
        decision = reply.decision
        candidates = []
        for c in (decision.candidates if decision else [])[:limit]:
            entry = und.faq.get(c.faq_id)
            candidates.append(
                {
                    "faq_id": c.faq_id,
                    "title": c.title,
                    "score": round(float(c.score), 3),
                    "action": str(c.action),
                    "action_label": ACTION_LABELS.get(str(c.action), str(c.action)),
                    "answer": und.faq.answer_text(entry) if entry is not None else "",
                }
            )
        return {
            "text": text,
            "target": which,
            "decision": {
                "action": str(decision.action) if decision else None,
                "faq_id": decision.faq_id if decision else None,
                "score": round(float(decision.score), 3) if decision else 0.0,
                "say": reply.text,  # what the caller hears
                "kind": reply.kind,
                "next": str(reply.next),
            },
            "candidates": candidates,
        }


def _change_summary(changes: list[dict[str, Any]]) -> list[str]:
    marks = {"added": "追加", "changed": "変更", "removed": "削除"}
    return [f"{marks[c['change']]}: {c['id']}" for c in changes][:100]


def _change_line(changes: list[dict[str, Any]]) -> str:
    counts = {
        k: sum(1 for c in changes if c["change"] == k) for k in ("added", "changed", "removed")
    }
    return f"追加{counts['added']}件・変更{counts['changed']}件・削除{counts['removed']}件"


# --- helpers for other pages ----------------------------------------------------------------


def add_example_question(
    db: Database,
    entry_id: str,
    text: str,
    user: User | str | None,
    city: CityConfig | None = None,
) -> dict[str, Any]:
    """Add ``text`` as an example question of ``entry_id`` in the draft; returns the entry.

    Used by the unanswered-questions page ("this question means that entry"). A question
    the entry already has is not added twice. Raises FaqNotFound / FaqValidationError.
    """
    store = FaqVersions(db, city=city)
    text = " ".join(text.split())
    if not text:
        raise FaqValidationError([EntryProblem("質問文が空です。", "questions", entry_id)])
    entry = store.draft().get(entry_id)
    if entry is None:
        raise FaqNotFound(f"項目「{entry_id}」は見つかりません。")
    if text in entry["questions"]:
        return entry
    data = {**entry, "questions": [*entry["questions"], text]}
    saved, _warnings = store.save_entry(data, user, entry_id=entry_id)
    return saved


def new_entry_id(db: Database, prefix: str = "custom") -> str:
    """An unused id for an entry created without one, e.g. ``custom.3f9a1c``."""
    taken = {e["id"] for e in FaqVersions(db).draft().entries}
    while True:
        candidate = f"{prefix}.{secrets.token_hex(3)}"
        if candidate not in taken:
            return candidate


def create_entry_draft(
    db: Database,
    *,
    title: str,
    questions: list[str],
    answer: str,
    category: str,
    user: User | str | None,
    action: str = "answer",
    keywords: list[str] | None = None,
    entry_id: str | None = None,
    followup: str | None = None,
    city: CityConfig | None = None,
) -> dict[str, Any]:
    """Create a new entry in the draft (e.g. from an unanswered question); returns it.

    ``entry_id`` defaults to a generated ``custom.xxxxxx``. Raises FaqValidationError with
    every problem (Japanese) when the entry would be invalid.
    """
    store = FaqVersions(db, city=city)
    data: dict[str, Any] = {
        "category": category,
        "id": entry_id or new_entry_id(db),
        "title": title,
        "action": action,
        "questions": list(questions),
        "keywords": list(keywords or []),
        "answer": answer,
    }
    if followup:
        data["followup"] = followup
    saved, _warnings = store.save_entry(data, user)
    return saved


# --- which version each node speaks -----------------------------------------------------


def record_node_version(db: Database, node: str, role: str, version: int) -> None:
    """Note that ``node`` speaks ``version`` now (and is alive): an upsert of its own row."""
    now = utcnow()
    with db.session() as s:
        row = s.get(NodeFaqVersion, node)
        if row is None:
            s.add(
                NodeFaqVersion(node=node, role=role, version=version, switched_at=now, seen_at=now)
            )
            return
        if row.version != version:
            row.version, row.switched_at = version, now
        row.role, row.seen_at = role, now


def node_versions(db: Database) -> list[dict[str, Any]]:
    """Every node that has spoken an FAQ, by name: its version and when it last checked."""
    with db.session() as s:
        rows = s.scalars(select(NodeFaqVersion).order_by(NodeFaqVersion.node)).all()
    return [
        {
            "node": r.node,
            "role": r.role,
            "version": r.version,
            "switched_at": r.switched_at.isoformat() + "Z",
            "seen_at": r.seen_at.isoformat() + "Z",
        }
        for r in rows
    ]
