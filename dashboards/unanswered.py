"""Questions the bot could not answer, grouped so that operators can improve the FAQ.

An utterance is *unanswered* when the bot asked again or asked for confirmation with a
confidence below the answer threshold (``low_confidence``), handed the call over because
it did not understand (``not_understood``), handed it over for a staff-only topic or
a turn limit (``transferred``), or told the caller it was about a charge that is not a
tax (``not_a_tax``: listed so that a tax question taken for one is seen). Requests for
a person (「担当者お願いします」) and component failures are not questions and are left
out.

Callers say the same thing in many ways, and recognition spells it in more, so the
utterances are grouped by similarity: content words in dictionary form (SudachiPy) and
the sound key (reading with vowel length folded, so 納付書 and 農夫書 agree), compared
with rapidfuzz, and kept apart when they name different taxes. Each group gives the
operator what they need for one click: a representative wording, examples, and the FAQ
entries the matcher thought closest (or that the caller was answered with right after),
to add the wording as an example question, or to create a new entry.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from rapidfuzz import fuzz
from sqlalchemy import select, update

from dashboards.call_records import Call, Turn
from dashboards.db import Database
from dashboards.reports import day_bounds
from faq.aspects import subjects
from faq.morphology import content_lemmas
from faq.normalize import normalize
from faq.reading import sound_key

LOW_CONFIDENCE_ACTIONS = ("reprompt", "confirm", "choose")
NOT_A_TAX = "not_a_tax"  # told the caller the tax line does not handle the charge
# Transfer reasons that say the question itself went unanswered.
UNANSWERED_TRANSFERS = {
    "not_understood": "not_understood",
    "staff_topic": "transferred",
    "turn_limit": "transferred",
}
# Words that say how someone asks, not what about.
_GENERIC_LEMMAS = frozenset(
    {
        "知る",
        "教える",
        "付く",
        "つく",
        "思う",
        "分かる",
        "聞く",
        "尋ねる",
        "する",
        "ある",
        "居る",
        "いる",
        "なる",
        "言う",
        "出来る",
        "できる",
        "下さる",
        "欲しい",
        "良い",
        "いい",
        "為",
        "方",
        "事",
        "物",
        "それ",
        "これ",
        "様",
        "今",
        "ちょっと",
        "一寸",
    }
)
DEFAULT_THRESHOLD = 0.46


@dataclass(frozen=True)
class UnansweredUtterance:
    """One caller utterance the bot could not answer."""

    turn_id: int
    call_id: str
    at: dt.datetime
    text: str
    kind: str  # low_confidence, not_understood, transferred, not_a_tax
    action: str
    score: float | None
    faq_id: str | None  # the bot's best guess
    candidates: list[dict]  # as stored: [{"faq_id", "score", ...}]
    answered_next: str | None = None  # FAQ answered in the caller's next turn, if any


@dataclass(frozen=True)
class CandidateVote:
    """An FAQ entry proposed for a group: how often, and how strongly."""

    faq_id: str
    votes: int  # utterances that had it among their candidates (or were answered with it)
    mean_score: float
    answered_next: int  # utterances whose caller got this answer in the next turn


@dataclass
class UnansweredGroup:
    """Utterances that ask the same thing, with what the operator needs to act on them."""

    representative: str
    count: int
    kinds: dict[str, int]
    examples: list[UnansweredUtterance]
    candidates: list[CandidateVote]
    first_at: dt.datetime
    last_at: dt.datetime
    turn_ids: list[int] = field(default_factory=list)  # for mark_reviewed

    @property
    def best_faq_id(self) -> str | None:
        return self.candidates[0].faq_id if self.candidates else None


# -- loading -------------------------------------------------------------------------------
def unanswered_utterances(
    db: Database,
    start: dt.date,
    end: dt.date,
    *,
    answer_threshold: float = 0.70,
    include_transferred: bool = True,
    include_reviewed: bool = False,
    site: str | None = None,
) -> list[UnansweredUtterance]:
    """Unanswered utterances of calls that started on Tokyo days ``start``..``end``.

    ``answer_threshold`` is the bot's ``[thresholds] answer``: a confirmation at or above
    it was asked for another reason (a staff-only topic close by) and is not listed.
    """
    lo, hi = day_bounds(start, end)
    where = [Call.started_at >= lo, Call.started_at < hi]
    if site is not None:
        where.append(Call.site == site)
    with db.session() as s:
        ids = select(Turn.call_id).join(Call, Call.id == Turn.call_id).where(*where)
        ids = ids.where(
            (Turn.action.in_(LOW_CONFIDENCE_ACTIONS))
            | (Turn.action == "transfer")
            | (Turn.action == NOT_A_TAX)
        ).distinct()
        rows = s.execute(
            select(Turn, Call.transfer_reason)
            .join(Call, Call.id == Turn.call_id)
            .where(Turn.call_id.in_(ids))
            .order_by(Turn.call_id, Turn.seq)
        ).all()
    out: list[UnansweredUtterance] = []
    for i, (turn, transfer_reason) in enumerate(rows):
        kind = _kind(turn, transfer_reason, answer_threshold)
        if kind is None or (kind == "transferred" and not include_transferred):
            continue
        if turn.reviewed_at is not None and not include_reviewed:
            continue
        text = (turn.text or "").strip()
        if not text or text.startswith("["):  # DTMF and failure markers are not speech
            continue
        nxt = rows[i + 1][0] if i + 1 < len(rows) else None
        answered_next = (
            nxt.faq_id
            if nxt is not None and nxt.call_id == turn.call_id and nxt.action == "answer"
            else None
        )
        out.append(
            UnansweredUtterance(
                turn_id=turn.id,
                call_id=turn.call_id,
                at=turn.at,
                text=text,
                kind=kind,
                action=turn.action or "",
                score=turn.score,
                faq_id=turn.faq_id,
                candidates=list(turn.candidates or []),
                answered_next=answered_next,
            )
        )
    return out


def _kind(turn: Turn, transfer_reason: str | None, threshold: float) -> str | None:
    if turn.action in LOW_CONFIDENCE_ACTIONS:
        return "low_confidence" if (turn.score or 0.0) < threshold else None
    if turn.action == "transfer":
        return UNANSWERED_TRANSFERS.get(transfer_reason or "")
    if turn.action == NOT_A_TAX:
        return NOT_A_TAX
    return None


def mark_reviewed(db: Database, turn_ids: Iterable[int], at: dt.datetime | None = None) -> int:
    """Take utterances off the list (the operator handled them); returns how many."""
    ids = list(turn_ids)
    if not ids:
        return 0
    at = at or dt.datetime.now(dt.UTC)
    with db.session() as s:
        return s.execute(update(Turn).where(Turn.id.in_(ids)).values(reviewed_at=at)).rowcount


# -- similarity ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Features:
    normalized: str
    key: str
    lemmas: frozenset[str]
    taxes: frozenset[str]


@lru_cache(maxsize=8192)
def features(text: str) -> _Features:
    norm = normalize(text) or text
    key = sound_key(norm)
    lemmas = frozenset(w for w in content_lemmas(norm) if w not in _GENERIC_LEMMAS)
    return _Features(norm, key, lemmas, frozenset(subjects(norm, key)))


def similarity(a: str, b: str) -> float:
    """How likely two utterances ask the same thing, 0-1.

    Half content-word overlap (Dice over lemmas, so word order and politeness do not
    matter), half sound-key similarity (so recognition's wrong kanji do not matter);
    halved when they name different taxes.
    """
    fa, fb = features(a), features(b)
    if fa.normalized == fb.normalized:
        return 1.0
    words = (
        2 * len(fa.lemmas & fb.lemmas) / (len(fa.lemmas) + len(fb.lemmas))
        if fa.lemmas and fb.lemmas
        else 0.0
    )
    sound = fuzz.ratio(fa.key, fb.key) / 100.0
    score = 0.5 * words + 0.5 * sound
    if fa.taxes and fb.taxes and not fa.taxes & fb.taxes:
        score *= 0.5
    return score


# -- grouping ------------------------------------------------------------------------------
# Grouping compares every wording with every group: quadratic. A year of calls could hold
# tens of thousands of distinct wordings, so only the most frequent are grouped (the page
# says how many were left out), and one grouping runs at a time.
MAX_WORDINGS = 2000
MAX_REPRESENTATIVE_CANDIDATES = 50
_one_grouping_at_a_time = threading.Lock()


class UnansweredGroups(list[UnansweredGroup]):
    """The groups, most utterances first, and what was too rare to be grouped."""

    def __init__(
        self,
        groups: Iterable[UnansweredGroup] = (),
        wordings_left_out: int = 0,
        utterances_left_out: int = 0,
    ):
        super().__init__(groups)
        self.wordings_left_out = wordings_left_out
        self.utterances_left_out = utterances_left_out


def group_utterances(
    utterances: Sequence[UnansweredUtterance],
    threshold: float = DEFAULT_THRESHOLD,
    max_examples: int = 5,
    max_candidates: int = 3,
    compare_members: int = 12,
    max_wordings: int = MAX_WORDINGS,
) -> UnansweredGroups:
    """Greedy average-link grouping; groups with most utterances first.

    Distinct wordings are taken most frequent first (at most ``max_wordings``; the rest
    are counted as left out); each joins the group whose members (up to
    ``compare_members`` of them) it resembles most on average, if that is at least
    ``threshold``, else starts a group. Deterministic for the same input.
    """
    by_text: dict[str, list[UnansweredUtterance]] = defaultdict(list)
    for u in utterances:
        by_text[features(u.text).normalized].append(u)
    ranked = sorted(by_text, key=lambda t: (-len(by_text[t]), t))
    wordings, left_out = ranked[:max_wordings], ranked[max_wordings:]
    clusters: list[list[str]] = []
    for wording in wordings:
        best, best_score = None, threshold
        for cluster in clusters:
            members = cluster[:compare_members]
            score = sum(similarity(wording, m) for m in members) / len(members)
            if score >= best_score:
                best, best_score = cluster, score
        if best is None:
            clusters.append([wording])
        else:
            best.append(wording)
    groups = [_group(c, by_text, max_examples, max_candidates) for c in clusters]
    groups.sort(key=lambda g: (-g.count, -g.last_at.timestamp(), g.representative))
    return UnansweredGroups(groups, len(left_out), sum(len(by_text[t]) for t in left_out))


def _group(
    wordings: list[str],
    by_text: dict[str, list[UnansweredUtterance]],
    max_examples: int,
    max_candidates: int,
) -> UnansweredGroup:
    members = [u for w in wordings for u in by_text[w]]
    # The representative: the wording most like the others (weighted by how often said),
    # among the group's most frequent wordings (they come most frequent first).
    common = wordings[:MAX_REPRESENTATIVE_CANDIDATES]
    if len(common) == 1:
        rep = common[0]
    else:
        rep = max(
            common,
            key=lambda w: (
                sum(len(by_text[o]) * similarity(w, o) for o in common if o != w) + len(by_text[w])
            ),
        )
    rep_text = Counter(u.text for u in by_text[rep]).most_common(1)[0][0]
    examples: list[UnansweredUtterance] = []
    seen: set[str] = set()
    for u in sorted(members, key=lambda u: u.at, reverse=True):
        if u.text not in seen:
            seen.add(u.text)
            examples.append(u)
        if len(examples) >= max_examples:
            break
    return UnansweredGroup(
        representative=rep_text,
        count=len(members),
        kinds=dict(Counter(u.kind for u in members)),
        examples=examples,
        candidates=candidate_votes(members)[:max_candidates],
        first_at=min(u.at for u in members),
        last_at=max(u.at for u in members),
        turn_ids=sorted(u.turn_id for u in members),
    )


def candidate_votes(members: Iterable[UnansweredUtterance]) -> list[CandidateVote]:
    """FAQ entries proposed for a group, strongest evidence first.

    An answer the caller got right after rephrasing is the best evidence of what they
    meant; then how many utterances had the entry among their candidates, and how high.
    """
    scores: dict[str, list[float]] = defaultdict(list)
    answered: Counter[str] = Counter()
    for u in members:
        seen = set()
        for c in u.candidates:
            fid = c.get("faq_id")
            if fid and fid not in seen:
                seen.add(fid)
                scores[fid].append(float(c.get("score") or 0.0))
        if u.faq_id and u.faq_id not in seen:
            scores[u.faq_id].append(float(u.score or 0.0))
        if u.answered_next:
            answered[u.answered_next] += 1
            scores.setdefault(u.answered_next, [])
    votes = [
        CandidateVote(
            faq_id=f,
            votes=max(len(s), answered[f]),
            mean_score=sum(s) / len(s) if s else 0.0,
            answered_next=answered[f],
        )
        for f, s in scores.items()
    ]
    votes.sort(key=lambda v: (-v.answered_next, -v.votes * v.mean_score, -v.votes, v.faq_id))
    return votes


def unanswered_groups(
    db: Database,
    start: dt.date,
    end: dt.date,
    *,
    answer_threshold: float = 0.70,
    include_transferred: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    site: str | None = None,
) -> UnansweredGroups:
    """Unanswered utterances of the period, grouped (see ``group_utterances``).

    One grouping at a time: requests for several periods wait rather than share the CPU
    that also serves the calls."""
    utterances = unanswered_utterances(
        db,
        start,
        end,
        answer_threshold=answer_threshold,
        include_transferred=include_transferred,
        site=site,
    )
    with _one_grouping_at_a_time:
        return group_utterances(utterances, threshold)
