"""The FAQ editor: pages and JSON API for entries, draft, publishing, history and import.

Everyone logged in may read the FAQ, try questions and listen to answers; only admins
and operators change it. Blocking work (database, matcher builds, spreadsheet parsing)
runs in the thread pool; publishing awaits ``Services.on_faq_published`` so the bot
speaks the new version.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import unicodedata
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dashboards import faq_io
from dashboards.accounts import User
from dashboards.app import render
from dashboards.faq_versions import (
    ACTION_LABELS,
    FIELD_LABELS,
    KIND_LABELS,
    FaqConflict,
    FaqImportConflict,
    FaqNotFound,
    FaqValidationError,
    FaqVersions,
    diff_snapshots,
    entry_hash,
    node_versions,
)
from dashboards.flash import flash_query, verified_flash
from dashboards.security import require_role
from dashboards.services import Services, get_services
from faq.store import Faq, fill_placeholders

log = logging.getLogger(__name__)
router = APIRouter()

READERS = require_role("admin", "operator", "staff", "viewer")
EDITORS = require_role("admin", "operator")
Reader = Annotated[User, Depends(READERS)]
Editor = Annotated[User, Depends(EDITORS)]
Svc = Annotated[Services, Depends(get_services)]
EntryId = Annotated[str, Path(min_length=1, max_length=120)]
VersionNo = Annotated[int, Path(ge=1, le=1_000_000)]
Target = Literal["draft", "published"]

NO_BOT_MESSAGE = (
    "音声合成が動いていないため、いまは回答を再生できません。ボットの起動後にお試しください。"
)


def store(request: Request) -> FaqVersions:
    return request.app.state.faq_versions


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _http_error(exc: Exception) -> HTTPException:
    if isinstance(exc, FaqNotFound):
        return HTTPException(status_code=404, detail=str(exc))
    if isinstance(exc, FaqConflict):
        return HTTPException(status_code=409, detail=str(exc))
    if isinstance(exc, FaqValidationError):
        return HTTPException(status_code=422, detail=[p.as_dict() for p in exc.problems])
    raise exc


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


def search(entries: list[dict[str, Any]], q: str | None) -> list[dict[str, Any]]:
    """Entries whose id, title, questions, keywords or answer contain every word of ``q``."""
    if not q or not q.strip():
        return entries
    words = _fold(q).split()

    def haystack(e: dict[str, Any]) -> str:
        parts = [e["id"], e["title"], e.get("category", ""), e["answer"], e.get("followup") or ""]
        parts += e.get("questions", []) + e.get("keywords", []) + e.get("tags", [])
        return _fold(" ".join(parts))

    return [e for e in entries if all(w in haystack(e) for w in words)]


async def _notify_published(services: Services, faq: Faq) -> str | None:
    """Tell the bot; returns a warning (Japanese) if it could not switch over."""
    if services.on_faq_published is None:
        return None
    try:
        await services.on_faq_published(faq)
    except Exception:
        log.exception("on_faq_published failed")
        return "公開しましたが、ボットへの反映に失敗しました。ボットの状態をご確認ください。"
    return None


# --- JSON API ------------------------------------------------------------------------------


class EntryIn(BaseModel):
    """An FAQ entry as the editor sends it (validated by faq.store's rules on save)."""

    id: str = Field(max_length=120)
    category: str = Field(max_length=100)
    title: str = Field(max_length=200)
    action: str = Field(max_length=20)
    questions: list[str] = Field(max_length=200)
    keywords: list[str] = Field(default_factory=list, max_length=200)
    answer: str = Field(max_length=2000)
    followup: str | None = Field(None, max_length=1000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    expected_hash: str | None = Field(
        None, max_length=64, description="hash of the entry when read; 409 if changed since"
    )

    def data(self) -> dict[str, Any]:
        d = self.model_dump(exclude={"expected_hash"})
        if not d.get("followup"):
            d.pop("followup", None)
        return d


class PublishIn(BaseModel):
    comment: str = Field("", max_length=500)


class TryIn(BaseModel):
    text: str = Field(min_length=1, max_length=500)
    target: Target = "draft"


def _with_hash(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "hash": entry_hash(entry)}


def _entries_of(request: Request, version: str) -> list[dict[str, Any]]:
    if version not in ("draft", "published") and not version.isdigit():
        raise HTTPException(
            status_code=422, detail="version は draft、published または版番号です。"
        )
    try:
        return store(request).entries_of(version if not version.isdigit() else int(version))
    except (FaqNotFound, ValueError, OverflowError) as exc:
        raise HTTPException(status_code=404, detail="指定の版は見つかりません。") from exc


VersionQuery = Annotated[str, Query(max_length=12, pattern=r"^(draft|published|[0-9]{1,9})$")]


@router.get("/api/faq/entries", tags=["faq"])
def api_entries(
    request: Request,
    _user: Reader,
    q: Annotated[str | None, Query(max_length=200)] = None,
    version: VersionQuery = "draft",
) -> list[dict[str, Any]]:
    """Entries of the draft (default), the published FAQ or a version; ``q`` searches."""
    return [_with_hash(e) for e in search(_entries_of(request, version), q)]


@router.get("/api/faq/entries/{entry_id}", tags=["faq"])
def api_entry(
    request: Request, entry_id: EntryId, _user: Reader, version: VersionQuery = "draft"
) -> dict[str, Any]:
    entry = next((e for e in _entries_of(request, version) if e["id"] == entry_id), None)
    if entry is None:
        raise HTTPException(status_code=404, detail=f"項目「{entry_id}」は見つかりません。")
    return _with_hash(entry)


@router.post("/api/faq/entries", status_code=201, tags=["faq"])
def api_create_entry(request: Request, body: EntryIn, user: Editor) -> dict[str, Any]:
    """Add an entry to the draft."""
    try:
        entry, warnings = store(request).save_entry(body.data(), user, client=_client(request))
    except (FaqNotFound, FaqConflict, FaqValidationError) as exc:
        raise _http_error(exc) from exc
    return {"entry": _with_hash(entry), "warnings": [w.as_dict() for w in warnings]}


@router.put("/api/faq/entries/{entry_id}", tags=["faq"])
def api_update_entry(
    request: Request, entry_id: EntryId, body: EntryIn, user: Editor
) -> dict[str, Any]:
    """Replace an entry in the draft (``expected_hash`` guards against lost updates)."""
    try:
        entry, warnings = store(request).save_entry(
            body.data(), user, entry_id, body.expected_hash, _client(request)
        )
    except (FaqNotFound, FaqConflict, FaqValidationError) as exc:
        raise _http_error(exc) from exc
    return {"entry": _with_hash(entry), "warnings": [w.as_dict() for w in warnings]}


@router.delete("/api/faq/entries/{entry_id}", status_code=204, tags=["faq"])
def api_delete_entry(request: Request, entry_id: EntryId, user: Editor) -> Response:
    try:
        store(request).delete_entry(entry_id, user, _client(request))
    except (FaqNotFound, FaqConflict, FaqValidationError) as exc:
        raise _http_error(exc) from exc
    return Response(status_code=204)


@router.get("/api/faq/draft", tags=["faq"])
def api_draft(request: Request, _user: Reader) -> dict[str, Any]:
    """The draft's state: which version it is based on and what changed since."""
    d = store(request).draft()
    return {
        "base_version": d.base_version,
        "revision": d.revision,
        "updated_at": d.updated_at.isoformat() + "Z",
        "updated_by": d.updated_by,
        "entry_count": len(d.entries),
        "changes": d.changes,
    }


@router.post("/api/faq/draft/discard", tags=["faq"])
def api_discard(request: Request, user: Editor) -> dict[str, Any]:
    try:
        store(request).discard_draft(user, _client(request))
    except (FaqNotFound, FaqConflict) as exc:
        raise _http_error(exc) from exc
    return {"ok": True}


@router.post("/api/faq/publish", tags=["faq"])
async def api_publish(request: Request, body: PublishIn, user: Editor, services: Svc) -> dict:
    """Publish the draft as a new version and switch the bot to it."""
    try:
        summary, faq = await run_in_threadpool(
            store(request).publish, user, body.comment, _client(request)
        )
    except (FaqNotFound, FaqConflict, FaqValidationError) as exc:
        raise _http_error(exc) from exc
    warning = await _notify_published(services, faq)
    return {"version": summary, "warning": warning}


@router.get("/api/faq/versions", tags=["faq"])
def api_versions(request: Request, _user: Reader) -> list[dict[str, Any]]:
    return store(request).versions()


@router.get("/api/faq/versions/{number}", tags=["faq"])
def api_version(request: Request, number: VersionNo, _user: Reader) -> dict[str, Any]:
    try:
        row = store(request).version(number)
    except FaqNotFound as exc:
        raise _http_error(exc) from exc
    return {**row.summary(), "entries": row.entries()}


@router.post("/api/faq/versions/{number}/rollback", tags=["faq"])
async def api_rollback(
    request: Request, number: VersionNo, body: PublishIn, user: Editor, services: Svc
) -> dict[str, Any]:
    """Publish an old version's content again as a new version."""
    try:
        summary, faq = await run_in_threadpool(
            store(request).rollback, number, user, body.comment, _client(request)
        )
    except (FaqNotFound, FaqConflict, FaqValidationError) as exc:
        raise _http_error(exc) from exc
    warning = await _notify_published(services, faq)
    return {"version": summary, "warning": warning}


@router.get("/api/faq/diff", tags=["faq"])
def api_diff(
    request: Request,
    _user: Reader,
    from_: Annotated[
        str, Query(alias="from", max_length=12, pattern=r"^(draft|published|[0-9]{1,9})$")
    ] = "published",
    to: VersionQuery = "draft",
) -> dict[str, Any]:
    """Per entry and field: what changed between two versions (or a version and the draft)."""
    return {
        "from": from_,
        "to": to,
        "changes": diff_snapshots(_entries_of(request, from_), _entries_of(request, to)),
    }


# Parsing a spreadsheet is CPU work bounded by faq_io's limits; one at a time per process
# keeps a few uploads from taking every core (it runs in a worker thread, off the loop).
_import_slots = threading.BoundedSemaphore(1)


def _import(
    request: Request, filename: str, data: bytes, user: User, overwrite: bool = False
) -> dict[str, Any]:
    versions = store(request)
    with _import_slots:
        entries, base_revision = faq_io.read_import(
            filename, data, versions.city, versions.synonyms_path
        )
    draft = versions.replace_draft(
        entries,
        user,
        filename or "upload",
        _client(request),
        base_revision=base_revision,
        overwrite=overwrite,
    )
    return {"entry_count": len(entries), "changes": draft.changes}


@router.post("/api/faq/import", tags=["faq"])
async def api_import(
    request: Request,
    user: Editor,
    file: Annotated[UploadFile, File()],
    overwrite: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    """Replace the draft with a CSV/xlsx file; nothing changes if any row is bad (422).

    A file exported from an older draft is refused (409, naming the entries) when it would
    undo edits made since its export, unless ``overwrite`` is true. A file without the
    base-revision column counts as exported from an unknown draft: refused if it would
    change any entry, unless ``overwrite`` is true.
    """
    data = await file.read(faq_io.MAX_BYTES + 1)
    try:
        return await run_in_threadpool(_import, request, file.filename or "", data, user, overwrite)
    except faq_io.FaqImportError as exc:
        raise HTTPException(status_code=422, detail=[e.as_dict() for e in exc.errors]) from exc
    except (FaqNotFound, FaqConflict, FaqValidationError) as exc:
        raise _http_error(exc) from exc


@router.get("/api/faq/export", tags=["faq"])
def api_export(
    request: Request,
    _user: Reader,
    format: Literal["csv", "xlsx"] = "xlsx",
    version: VersionQuery = "draft",
) -> Response:
    """The FAQ as a spreadsheet (one row per entry) for editing in Excel."""
    revision = store(request).draft().revision  # read first: an edit after it is a conflict
    entries = _entries_of(request, version)
    if format == "csv":
        body, media = faq_io.export_csv(entries, revision), faq_io.CSV_MEDIA_TYPE
    else:
        body, media = faq_io.export_xlsx(entries, revision), faq_io.XLSX_MEDIA_TYPE
    name = f"faq-{version}.{format}"
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.post("/api/faq/try", tags=["faq"])
async def api_try(request: Request, body: TryIn, _user: Reader) -> dict[str, Any]:
    """What the bot would do with a question, on the draft or the published FAQ."""
    try:
        return await run_in_threadpool(store(request).try_question, body.text, body.target)
    except (FaqNotFound, FaqValidationError) as exc:
        raise _http_error(exc) from exc


@router.get(
    "/api/faq/entries/{entry_id}/audio",
    tags=["faq"],
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}}, 503: {"description": "no bot running"}},
)
async def api_audio(
    request: Request, entry_id: EntryId, _user: Reader, services: Svc, version: Target = "draft"
) -> Response:
    """The answer as the bot will say it (WAV), rendered by the bot's voice and cache."""
    bot = services.bot
    if bot is None:
        raise HTTPException(status_code=503, detail=NO_BOT_MESSAGE)
    versions = store(request)
    entries = await run_in_threadpool(versions.entries_of, version)
    entry = next((e for e in entries if e["id"] == entry_id), None)
    if entry is None:
        raise HTTPException(status_code=404, detail=f"項目「{entry_id}」は見つかりません。")
    try:
        text = fill_placeholders(entry["answer"], versions.city.values())
    except (KeyError, ValueError) as exc:
        raise HTTPException(
            status_code=422, detail="回答の差し込み項目が正しくないため、音声を作成できません。"
        ) from exc
    try:
        speech = await bot.speech_cache.render(text)
    except Exception as exc:
        log.exception("answer audio for %s failed", entry_id)
        raise HTTPException(status_code=503, detail="音声を作成できませんでした。") from exc
    path = bot.speech_cache.path(text)
    if path.exists():
        return FileResponse(path, media_type="audio/wav")
    return Response(await run_in_threadpool(_wav_bytes, speech), media_type="audio/wav")


def _wav_bytes(speech: Any) -> bytes:
    from voicebot.wavfile import write_wav

    with tempfile.TemporaryDirectory() as tmp:
        path = FsPath(tmp) / "answer.wav"
        write_wav(path, speech.samples, speech.sample_rate)
        return path.read_bytes()


# --- pages ---------------------------------------------------------------------------------


def _redirect(request: Request, path: str, message: str, kind: str = "ok") -> RedirectResponse:
    sep = "&" if "?" in path else "?"
    return RedirectResponse(f"{path}{sep}{flash_query(request, message, kind)}", status_code=303)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("｜", "\n").splitlines() if line.strip()]


def _can_edit(user: User) -> bool:
    return user.role in ("admin", "operator")


def _page_ctx(flash: str | None, kind: str | None) -> dict[str, Any]:
    return {
        "flash": flash,
        "flash_kind": kind if kind in ("ok", "info", "warn", "error") else "info",
        "action_labels": ACTION_LABELS,
        "field_labels": FIELD_LABELS,
        "kind_labels": KIND_LABELS,
    }


Flash = Annotated[str | None, Query(max_length=500)]
Kind = Annotated[str | None, Query(max_length=10)]


@router.get("/faq", response_class=HTMLResponse, include_in_schema=False)
def faq_list_page(
    request: Request,
    user: Reader,
    q: Annotated[str | None, Query(max_length=200)] = None,
    flash: Flash = None,
    kind: Kind = None,
) -> HTMLResponse:
    versions = store(request)
    flash, kind = verified_flash(request, flash, kind)  # only notices this app wrote
    draft = versions.draft()
    changed = {c["id"]: c["change"] for c in draft.changes}
    return render(
        request,
        "faq_list.html",
        {
            **_page_ctx(flash, kind),
            "entries": search(draft.entries, q),
            "total": len(draft.entries),
            "q": q or "",
            "draft": draft,
            "changed": changed,
            "published": versions.published_number(),
            "can_edit": _can_edit(user),
        },
    )


def _entry_form(
    request: Request,
    user: User,
    entry: dict[str, Any] | None,
    form: dict[str, Any],
    errors: list[dict[str, Any]] | None = None,
    status_code: int = 200,
    flash: str | None = None,
    kind: str | None = None,
) -> HTMLResponse:
    versions = store(request)
    categories = sorted({e["category"] for e in versions.draft().entries})
    return render(
        request,
        "faq_edit.html",
        {
            **_page_ctx(flash, kind),
            "entry": entry,
            "form": form,
            "errors": errors or [],
            "error_fields": {e.get("field") for e in errors or []},
            "categories": categories,
            "placeholders": sorted(versions.city.values()),
            "can_edit": _can_edit(user),
        },
        status_code=status_code,
    )


def _form_of(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": entry["id"],
        "category": entry["category"],
        "title": entry["title"],
        "action": entry["action"],
        "questions": "\n".join(entry["questions"]),
        "keywords": "\n".join(entry.get("keywords", [])),
        "answer": entry["answer"],
        "followup": entry.get("followup") or "",
        "tags": "\n".join(entry.get("tags", [])),
        "expected_hash": entry_hash(entry),
    }


@router.get("/faq/new", response_class=HTMLResponse, include_in_schema=False)
def faq_new_page(request: Request, user: Editor) -> HTMLResponse:
    form = {
        "action": "answer",
        "id": "",
        "category": "",
        "title": "",
        "questions": "",
        "keywords": "",
        "answer": "",
        "followup": "",
        "tags": "",
        "expected_hash": "",
    }
    return _entry_form(request, user, None, form)


@router.get("/faq/entries/{entry_id}", response_class=HTMLResponse, include_in_schema=False)
def faq_edit_page(
    request: Request, entry_id: EntryId, user: Reader, flash: Flash = None, kind: Kind = None
) -> HTMLResponse:
    flash, kind = verified_flash(request, flash, kind)  # only notices this app wrote
    entry = store(request).draft().get(entry_id)
    if entry is None:
        raise HTTPException(status_code=404, detail=f"項目「{entry_id}」は見つかりません。")
    return _entry_form(request, user, entry, _form_of(entry), flash=flash, kind=kind)


FormText = Annotated[str, Form(max_length=5000)]


def _save_form(
    request: Request,
    user: User,
    entry_id: str | None,
    form: dict[str, Any],
) -> Response:
    data = {
        "id": form["id"].strip(),
        "category": form["category"].strip(),
        "title": form["title"],
        "action": form["action"],
        "questions": _lines(form["questions"]),
        "keywords": _lines(form["keywords"]),
        "answer": form["answer"],
        "tags": _lines(form["tags"]),
    }
    if form["followup"].strip():
        data["followup"] = form["followup"]
    versions = store(request)
    try:
        entry, warnings = versions.save_entry(
            data, user, entry_id, form.get("expected_hash") or None, _client(request)
        )
    except FaqValidationError as exc:
        current = versions.draft().get(entry_id) if entry_id else None
        return _entry_form(
            request,
            user,
            current,
            form,
            [p.as_dict() for p in exc.problems],
            422,
            "保存できませんでした。入力内容をご確認ください。",
            "error",
        )
    except FaqConflict as exc:
        current = versions.draft().get(entry_id) if entry_id else None
        return _entry_form(request, user, current, form, [], 409, str(exc), "error")
    except FaqNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    message = f"「{entry['title']}」を下書きに保存しました。公開するとボットに反映されます。"
    if warnings:
        message += " ご注意: " + " ".join(w.message for w in warnings)
    return _redirect(
        request, f"/faq/entries/{quote(entry['id'])}", message, "warn" if warnings else "ok"
    )


def _form_dict(**fields: str) -> dict[str, str]:
    return fields


@router.post("/faq/new", include_in_schema=False)
def faq_create_form(
    request: Request,
    user: Editor,
    id: FormText = "",
    category: FormText = "",
    title: FormText = "",
    action: FormText = "answer",
    questions: FormText = "",
    keywords: FormText = "",
    answer: FormText = "",
    followup: FormText = "",
    tags: FormText = "",
) -> Response:
    form = _form_dict(
        id=id,
        category=category,
        title=title,
        action=action,
        questions=questions,
        keywords=keywords,
        answer=answer,
        followup=followup,
        tags=tags,
        expected_hash="",
    )
    return _save_form(request, user, None, form)


@router.post("/faq/entries/{entry_id}", include_in_schema=False)
def faq_update_form(
    request: Request,
    entry_id: EntryId,
    user: Editor,
    id: FormText = "",
    category: FormText = "",
    title: FormText = "",
    action: FormText = "answer",
    questions: FormText = "",
    keywords: FormText = "",
    answer: FormText = "",
    followup: FormText = "",
    tags: FormText = "",
    expected_hash: FormText = "",
) -> Response:
    form = _form_dict(
        id=id,
        category=category,
        title=title,
        action=action,
        questions=questions,
        keywords=keywords,
        answer=answer,
        followup=followup,
        tags=tags,
        expected_hash=expected_hash,
    )
    return _save_form(request, user, entry_id, form)


@router.post("/faq/entries/{entry_id}/delete", include_in_schema=False)
def faq_delete_form(request: Request, entry_id: EntryId, user: Editor) -> Response:
    try:
        store(request).delete_entry(entry_id, user, _client(request))
    except FaqNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except (FaqValidationError, FaqConflict) as exc:
        return _redirect(request, f"/faq/entries/{quote(entry_id)}", str(exc), "error")
    return _redirect(request, "/faq", f"「{entry_id}」を下書きから削除しました。")


@router.post("/faq/publish", include_in_schema=False)
async def faq_publish_form(
    request: Request,
    user: Editor,
    services: Svc,
    comment: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        summary, faq = await run_in_threadpool(
            store(request).publish, user, comment, _client(request)
        )
    except FaqConflict as exc:
        return _redirect(request, "/faq", str(exc), "warn")
    except FaqValidationError as exc:
        return _redirect(request, "/faq", "公開できませんでした: " + str(exc), "error")
    warning = await _notify_published(services, faq)
    if warning:
        return _redirect(request, "/faq", warning, "warn")
    return _redirect(
        request,
        "/faq",
        f"版{summary['number']}として公開しました。ボットは新しい回答でお答えします。",
    )


@router.post("/faq/discard", include_in_schema=False)
def faq_discard_form(request: Request, user: Editor) -> Response:
    store(request).discard_draft(user, _client(request))
    return _redirect(request, "/faq", "未公開の変更を破棄し、公開中の内容に戻しました。")


@router.get("/faq/versions", response_class=HTMLResponse, include_in_schema=False)
def faq_versions_page(
    request: Request, user: Reader, flash: Flash = None, kind: Kind = None
) -> HTMLResponse:
    flash, kind = verified_flash(request, flash, kind)  # only notices this app wrote
    versions = store(request)
    return render(
        request,
        "faq_versions.html",
        {
            **_page_ctx(flash, kind),
            "versions": versions.versions(),
            "published": versions.published_number(),
            "nodes": node_versions(versions.db),
            "can_edit": _can_edit(user),
        },
    )


@router.get("/faq/diff", response_class=HTMLResponse, include_in_schema=False)
def faq_diff_page(
    request: Request,
    _user: Reader,
    from_: Annotated[
        str, Query(alias="from", max_length=12, pattern=r"^(draft|published|[0-9]{1,9})$")
    ] = "published",
    to: VersionQuery = "draft",
) -> HTMLResponse:
    changes = diff_snapshots(_entries_of(request, from_), _entries_of(request, to))
    return render(
        request,
        "faq_diff.html",
        {**_page_ctx(None, None), "changes": changes, "from_": from_, "to": to},
    )


@router.post("/faq/versions/{number}/rollback", include_in_schema=False)
async def faq_rollback_form(
    request: Request, number: VersionNo, user: Editor, services: Svc
) -> Response:
    try:
        summary, faq = await run_in_threadpool(
            store(request).rollback, number, user, "", _client(request)
        )
    except FaqNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except (FaqValidationError, FaqConflict) as exc:
        return _redirect(request, "/faq/versions", "差し戻しできませんでした: " + str(exc), "error")
    warning = await _notify_published(services, faq)
    if warning:
        return _redirect(request, "/faq/versions", warning, "warn")
    return _redirect(
        request, "/faq/versions", f"版{number}の内容を、版{summary['number']}として公開しました。"
    )


@router.get("/faq/import", response_class=HTMLResponse, include_in_schema=False)
def faq_import_page(request: Request, user: Reader) -> HTMLResponse:
    return render(
        request,
        "faq_import.html",
        {
            **_page_ctx(None, None),
            "errors": [],
            "columns": faq_io.COLUMNS,
            "can_edit": _can_edit(user),
        },
    )


@router.post("/faq/import", include_in_schema=False)
async def faq_import_form(
    request: Request,
    user: Editor,
    file: Annotated[UploadFile | None, File()] = None,
    overwrite: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    conflict: list[dict[str, str]] = []
    if file is None or not file.filename:
        errors = [{"row": None, "message": "ファイルを選んでください。", "field_label": None}]
    else:
        data = await file.read(faq_io.MAX_BYTES + 1)
        try:
            result = await run_in_threadpool(
                _import, request, file.filename, data, user, overwrite == "1"
            )
        except faq_io.FaqImportError as exc:
            errors = [e.as_dict() for e in exc.errors]
        except FaqImportConflict as exc:
            errors = [{"row": None, "message": str(exc), "field_label": None}]
            conflict = [{"id": i, "title": t} for i, t in exc.entries]
        except (FaqValidationError, FaqConflict) as exc:
            errors = [{"row": None, "message": str(exc), "field_label": None}]
        else:
            return _redirect(
                request,
                "/faq",
                f"{result['entry_count']}件を下書きに取り込みました"
                f"（変更{len(result['changes'])}件）。内容をご確認のうえ公開してください。",
            )
    return render(
        request,
        "faq_import.html",
        {
            **_page_ctx(
                "取り込みませんでした。書き出し後に下書きで変更された項目があります。"
                if conflict
                else "取り込みませんでした。次の行を直してから、もう一度お試しください。",
                "error",
            ),
            "errors": errors,
            "conflict": conflict,
            "columns": faq_io.COLUMNS,
            "can_edit": True,
        },
        status_code=409 if conflict else 422,
    )
