"""The unanswered-questions page: grouped utterances the bot could not answer, and actions.

Operators improve the FAQ from here in one click: add the callers' wording as an
example question of an entry (the best candidate is preselected), or start a new entry
with it. Both change the FAQ *draft* (``dashboards.faq_versions``); nothing reaches
callers until the draft is published in the FAQ editor. Handled groups are marked
reviewed so that they leave the list.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dashboards.accounts import User
from dashboards.app import render
from dashboards.faq_versions import (
    FaqConflict,
    FaqNotFound,
    FaqValidationError,
    FaqVersions,
    add_example_question,
    create_entry_draft,
)
from dashboards.reports import TOKYO
from dashboards.routes.reports import Period, PeriodError, parse_period
from dashboards.security import require_role
from dashboards.services import Services, get_services
from dashboards.unanswered import (
    MAX_WORDINGS,
    UnansweredGroup,
    mark_reviewed,
    unanswered_groups,
)

log = logging.getLogger(__name__)
router = APIRouter()

UNANSWERED_ROLES = ("admin", "operator")

OperatorUser = Annotated[User, Depends(require_role(*UNANSWERED_ROLES))]
ServicesDep = Annotated[Services, Depends(get_services)]
DEFAULT_DAYS = 30
MAX_QUESTION_CHARS = 200
MAX_TITLE_CHARS = 60
MAX_ANSWER_CHARS = 400  # faq.store's own rules (150 spoken characters) apply on top
KIND_LABELS = {
    "low_confidence": "自信がなく聞き直し・確認",
    "not_understood": "理解できず転送",
    "transferred": "職員対応の話題として転送",
    "not_a_tax": "市税以外としてご案内",
}
PRESETS = (("7d", "過去7日間", 7), ("30d", "過去30日間", 30))
# A group's ids travel in a hidden field (``TurnIdsField``, at most 100,000 characters):
# about 10,000 ids of 9 digits. Ids are BIGINT-sized at most (what both backends hold).
MAX_TURN_IDS = 10_000
MAX_TURN_ID = 2**63 - 1
TURN_ID_DIGITS = len(str(MAX_TURN_ID))


class ActionError(ValueError):
    """An action that cannot be done as asked (message in Japanese, nothing changed).

    ``status`` is 400 for what the operator typed, 422 for a form the page did not make.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- period --------------------------------------------------------------------------------
def unanswered_period(
    start: str | None, end: str | None, preset: str | None, today: dt.date
) -> Period:
    """Like the reports' period, but the default is the last 30 days (questions pile up)."""
    for key, _, days in PRESETS:
        if preset == key or (not preset and not start and not end and days == DEFAULT_DAYS):
            return Period(today - dt.timedelta(days=days - 1), today, key)
    period = parse_period(start, end, preset, today)
    for key, _, days in PRESETS:
        if period.end == today and period.days == days:
            return Period(period.start, period.end, key)
    return period


def preset_links(period: Period, today: dt.date, transferred: bool) -> list[dict[str, Any]]:
    out = []
    for key, label, days in PRESETS:
        start = today - dt.timedelta(days=days - 1)
        query = {"from": start.isoformat(), "to": today.isoformat()}
        if not transferred:
            query["transferred"] = "0"
        out.append(
            {
                "label": label,
                "href": "/unanswered?" + urlencode(query),
                "active": period.preset == key,
            }
        )
    return out


# -- the FAQ draft -------------------------------------------------------------------------
@dataclass(frozen=True)
class DraftInfo:
    """What the page needs of the FAQ draft: titles, categories, the city facts."""

    titles: dict[str, str]
    categories: list[str]
    city: Any


def read_draft(services: Services) -> DraftInfo:
    """The draft operators edit (entries added here show up at once), blocking."""
    store = FaqVersions.for_services(services)
    entries = store.draft().entries
    categories = list(dict.fromkeys(e["category"] for e in entries))
    return DraftInfo({e["id"]: e["title"] for e in entries}, categories, store.city)


def problems_text(exc: Exception) -> str:
    if isinstance(exc, FaqValidationError):
        return " ".join(str(p) for p in exc.problems)
    return str(exc)


def add_example(services: Services, user: User, faq_id: str, question: str) -> dict[str, Any]:
    """Add ``question`` to entry ``faq_id`` of the draft (blocking); returns the entry."""
    city = FaqVersions.for_services(services).city
    try:
        return add_example_question(services.db, faq_id, question, user, city=city)
    except FaqNotFound as exc:
        raise ActionError(
            "選んだ項目が下書きに見つかりません。ページを再読み込みしてください。"
        ) from exc
    except (FaqValidationError, FaqConflict) as exc:
        raise ActionError(f"質問例を追加できませんでした。{problems_text(exc)}") from exc


def create_entry(
    services: Services, user: User, title: str, question: str, answer: str, category: str
) -> dict[str, Any]:
    """Start a new draft entry with the callers' wording (blocking); returns the entry."""
    city = FaqVersions.for_services(services).city
    try:
        return create_entry_draft(
            services.db,
            title=title,
            questions=[question],
            answer=answer,
            category=category,
            user=user,
            city=city,
        )
    except (FaqValidationError, FaqConflict, FaqNotFound) as exc:
        raise ActionError(f"新しい項目を作成できませんでした。{problems_text(exc)}") from exc


# -- presentation --------------------------------------------------------------------------
def when_text(at: dt.datetime) -> str:
    local = at.astimezone(TOKYO)
    return f"{local.month}/{local.day} {local.hour}:{local.minute:02d}"


def group_view(group: UnansweredGroup, titles: dict[str, str]) -> dict[str, Any]:
    """What the template shows of one group."""
    kinds = "・".join(
        f"{KIND_LABELS.get(k, k)} {n}件"
        for k, n in sorted(group.kinds.items(), key=lambda kv: -kv[1])
    )
    candidates = []
    for c in group.candidates:
        if c.faq_id not in titles:
            continue  # an entry since removed from the FAQ
        note = "言い直した後にこの回答" if c.answered_next else f"一致度 {c.mean_score:.2f}"
        candidates.append({"faq_id": c.faq_id, "title": titles[c.faq_id], "note": note})
    return {
        "representative": group.representative,
        "count": group.count,
        "kinds_text": kinds,
        "last_text": when_text(group.last_at),
        "examples": [{"text": u.text, "when": when_text(u.at)} for u in group.examples],
        "candidates": candidates,
        "turn_ids": ",".join(str(i) for i in group.turn_ids),
    }


def group_json(group: UnansweredGroup, titles: dict[str, str]) -> dict[str, Any]:
    return {
        "representative": group.representative,
        "count": group.count,
        "kinds": group.kinds,
        "first_at": group.first_at.isoformat(),
        "last_at": group.last_at.isoformat(),
        "examples": [
            {"text": u.text, "at": u.at.isoformat(), "kind": u.kind, "score": u.score}
            for u in group.examples
        ],
        "candidates": [
            {
                "faq_id": c.faq_id,
                "title": titles.get(c.faq_id),
                "votes": c.votes,
                "mean_score": c.mean_score,
                "answered_next": c.answered_next,
            }
            for c in group.candidates
        ],
        "turn_ids": group.turn_ids,
    }


@dataclass(frozen=True)
class Notice:
    """The message at the top of the page after an action."""

    kind: str  # ok or error
    text: str
    link: str | None = None
    link_text: str | None = None


def parse_turn_ids(value: str) -> list[int]:
    """The utterance ids a form names: comma-separated, each a database id (1 to 2**63-1).

    The page writes them; anything else (signs, other digits, numbers no database column
    holds, more ids than a form carries) is refused here with 422, before the FAQ or the
    database sees it.
    """
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ActionError("対象の発話がありません。ページを再読み込みしてください。", 422)
    if len(parts) > MAX_TURN_IDS:
        raise ActionError(
            f"一度に扱える発話は{MAX_TURN_IDS:,}件までです。ページを再読み込みしてください。",
            422,
        )
    if not all(p.isascii() and p.isdigit() and len(p) <= TURN_ID_DIGITS for p in parts):
        raise ActionError("発話の番号が正しくありません。ページを再読み込みしてください。", 422)
    ids = sorted({int(p) for p in parts})
    if ids[0] < 1 or ids[-1] > MAX_TURN_ID:
        raise ActionError("発話の番号が正しくありません。ページを再読み込みしてください。", 422)
    return ids


def clean_text(value: str, limit: int, what: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise ActionError(f"{what}を入力してください。")
    if len(text) > limit:
        raise ActionError(f"{what}は{limit}文字以内で入力してください。")
    return text


# -- routes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    """The list's filters, carried through the action forms so the page comes back alike."""

    start: str | None = None
    end: str | None = None
    preset: str | None = None
    transferred: bool = True

    def query(self, **extra: str) -> str:
        params = {"from": self.start or "", "to": self.end or "", "preset": self.preset or ""}
        params = {k: v for k, v in params.items() if v}
        if not self.transferred:
            params["transferred"] = "0"
        params.update(extra)
        return "/unanswered" + ("?" + urlencode(params) if params else "")


async def render_page(
    request: Request,
    services: Services,
    filters: Filters,
    notice: Notice | None = None,
    submitted: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The list for ``filters``; ``submitted`` refills the form an error came from."""
    today = dt.datetime.now(TOKYO).date()
    problem = None
    try:
        period = unanswered_period(filters.start, filters.end, filters.preset, today)
    except PeriodError as exc:
        problem = str(exc)
        status_code = 400
        period = unanswered_period(None, None, None, today)
    groups, draft = await asyncio.gather(
        asyncio.to_thread(
            unanswered_groups,
            services.db,
            period.start,
            period.end,
            answer_threshold=_answer_threshold(services),
            include_transferred=filters.transferred,
        ),
        asyncio.to_thread(read_draft, services),
    )
    shown = Filters(period.start.isoformat(), period.end.isoformat(), None, filters.transferred)
    context = {
        "range": period,
        "presets": preset_links(period, today, filters.transferred),
        "include_transferred": filters.transferred,
        "groups": [group_view(g, draft.titles) for g in groups],
        "total": sum(g.count for g in groups),
        "utterances_left_out": groups.utterances_left_out,
        "wordings_left_out": groups.wordings_left_out,
        "max_wordings": MAX_WORDINGS,
        "entries": sorted(
            ({"id": k, "title": v} for k, v in draft.titles.items()), key=lambda e: e["title"]
        ),
        "categories": draft.categories,
        "notice": notice,
        "submitted": submitted or {},
        "error": problem,
        "filters": shown,
    }
    return render(request, "unanswered.html", context, status_code=status_code)


@router.get("/unanswered", response_class=HTMLResponse, include_in_schema=False)
async def unanswered_page(
    request: Request,
    user: OperatorUser,
    services: ServicesDep,
    start: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=20)] = None,
    preset: Annotated[str | None, Query(max_length=10)] = None,
    transferred: Annotated[str, Query(max_length=5)] = "1",
    done: Annotated[str | None, Query(max_length=20)] = None,
    entry: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    filters = Filters(start, end, preset, transferred != "0")
    titles = (await asyncio.to_thread(read_draft, services)).titles if entry else {}
    return await render_page(request, services, filters, done_notice(done, entry, titles))


def _answer_threshold(services: Services) -> float:
    """The bot's own answer threshold: confirmations above it were not for lack of matches."""
    if services.bot is not None:
        return services.bot.settings.thresholds.answer
    from voicebot.config import Thresholds

    return Thresholds().answer


def done_notice(done: str | None, entry: str | None, titles: dict[str, str]) -> Notice | None:
    """The message after a successful action (Post/Redirect/Get)."""
    title = titles.get(entry or "", entry or "")
    if done == "added" and entry:
        return Notice(
            "ok",
            f"「{title}」の質問例に追加しました（下書き）。",
            "/faq",
            "FAQ編集で確認して公開する",
        )
    if done == "created" and entry:
        return Notice(
            "ok",
            f"新しい項目「{title}」を下書きに作成しました。内容を確認してから公開してください。",
            "/faq",
            "FAQ編集で確認する",
        )
    if done == "dismissed":
        return Notice("ok", "一覧から外しました。")
    return None


def form_filters(start: str, end: str, transferred: str) -> Filters:
    return Filters(start or None, end or None, None, transferred != "0")


FromField = Annotated[str, Form(alias="from", max_length=20)]
ToField = Annotated[str, Form(alias="to", max_length=20)]
TransferredField = Annotated[str, Form(max_length=5)]
TurnIdsField = Annotated[str, Form(max_length=100_000)]


@router.post("/unanswered/add-example", include_in_schema=False)
async def add_example_form(
    request: Request,
    user: OperatorUser,
    services: ServicesDep,
    faq_id: Annotated[str, Form(max_length=200)] = "",
    question: Annotated[str, Form(max_length=2000)] = "",
    turn_ids: TurnIdsField = "",
    start: FromField = "",
    end: ToField = "",
    transferred: TransferredField = "1",
) -> Response:
    """「質問例として追加」: the wording joins the entry's questions in the draft."""
    filters = form_filters(start, end, transferred)
    try:
        ids = parse_turn_ids(turn_ids)
        text = clean_text(question, MAX_QUESTION_CHARS, "質問例")
        if not faq_id:
            raise ActionError("追加先の項目を選んでください。")
        await asyncio.to_thread(add_example, services, user, faq_id, text)
    except ActionError as exc:
        log.info("add example refused: %s", exc)
        submitted = {"turn_ids": turn_ids, "question": question, "faq_id": faq_id}
        return await render_page(
            request, services, filters, Notice("error", str(exc)), submitted, exc.status
        )
    await asyncio.to_thread(mark_reviewed, services.db, ids)
    return RedirectResponse(filters.query(done="added", entry=faq_id), status_code=303)


@router.post("/unanswered/new-entry", include_in_schema=False)
async def new_entry_form(
    request: Request,
    user: OperatorUser,
    services: ServicesDep,
    title: Annotated[str, Form(max_length=500)] = "",
    question: Annotated[str, Form(max_length=2000)] = "",
    answer: Annotated[str, Form(max_length=5000)] = "",
    category: Annotated[str, Form(max_length=200)] = "",
    turn_ids: TurnIdsField = "",
    start: FromField = "",
    end: ToField = "",
    transferred: TransferredField = "1",
) -> Response:
    """「新しい項目を作成」: a new draft entry whose first question is the callers' wording."""
    filters = form_filters(start, end, transferred)
    try:
        ids = parse_turn_ids(turn_ids)
        name = clean_text(title, MAX_TITLE_CHARS, "項目名")
        text = clean_text(question, MAX_QUESTION_CHARS, "質問例")
        spoken = clean_text(answer, MAX_ANSWER_CHARS, "回答")
        if not category:
            raise ActionError("カテゴリを選んでください。")
        entry = await asyncio.to_thread(create_entry, services, user, name, text, spoken, category)
    except ActionError as exc:
        log.info("new entry refused: %s", exc)
        submitted = {
            "turn_ids": turn_ids,
            "title": title,
            "answer": answer,
            "category": category,
            "new": "1",
        }
        return await render_page(
            request, services, filters, Notice("error", str(exc)), submitted, exc.status
        )
    await asyncio.to_thread(mark_reviewed, services.db, ids)
    return RedirectResponse(filters.query(done="created", entry=entry["id"]), status_code=303)


@router.post("/unanswered/dismiss", include_in_schema=False)
async def dismiss_form(
    request: Request,
    user: OperatorUser,
    services: ServicesDep,
    turn_ids: TurnIdsField = "",
    start: FromField = "",
    end: ToField = "",
    transferred: TransferredField = "1",
) -> Response:
    """「対応不要」: take the group off the list without changing the FAQ."""
    filters = form_filters(start, end, transferred)
    try:
        ids = parse_turn_ids(turn_ids)
    except ActionError as exc:
        notice = Notice("error", str(exc))
        return await render_page(request, services, filters, notice, None, exc.status)
    await asyncio.to_thread(mark_reviewed, services.db, ids)
    return RedirectResponse(filters.query(done="dismissed"), status_code=303)


@router.get("/api/unanswered")
async def unanswered_api(
    user: OperatorUser,
    services: ServicesDep,
    start: Annotated[
        str | None, Query(alias="from", max_length=20, description="first day, YYYY-MM-DD")
    ] = None,
    end: Annotated[
        str | None, Query(alias="to", max_length=20, description="last day, YYYY-MM-DD")
    ] = None,
    transferred: Annotated[bool, Query(description="include transferred questions")] = True,
) -> JSONResponse:
    """Groups of similar unanswered utterances (Tokyo days; default: the last 30 days)."""
    today = dt.datetime.now(TOKYO).date()
    try:
        period = unanswered_period(start, end, None, today)
    except PeriodError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    groups, draft = await asyncio.gather(
        asyncio.to_thread(
            unanswered_groups,
            services.db,
            period.start,
            period.end,
            answer_threshold=_answer_threshold(services),
            include_transferred=transferred,
        ),
        asyncio.to_thread(read_draft, services),
    )
    return JSONResponse(
        {
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
            "caption": period.caption,
            "groups": [group_json(g, draft.titles) for g in groups],
            "wordings_left_out": groups.wordings_left_out,
            "utterances_left_out": groups.utterances_left_out,
        }
    )
