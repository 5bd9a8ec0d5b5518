"""Understanding one caller utterance: FAQ + matcher + decision policy, loaded once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from faq.city import load_city
from faq.intents import ControlIntent
from faq.matcher import Match, Matcher
from faq.store import Faq, load_faq
from voicebot.config import Settings, Thresholds
from voicebot.policy import (
    BotAction,
    Decision,
    decide,
    doubt_unsure_hearing,
    entry_action,
    staff_topic_near,
)

# An alternative hypothesis must beat the first by this much confidence to replace it.
NBEST_MARGIN = 0.05
# The decisions ``doubt_unsure_hearing`` may turn into a confirmation; it leaves every
# other one as it is.
DOUBTED_ACTIONS = (BotAction.ANSWER, BotAction.REDIRECT)
# An answer or redirect on the main decoding alone, matched at least this surely (and
# heard without the hint), does not wait for the extra decodings (validation audio:
# tests/data/eval/CONSTANTS.md).
SETTLED_SCORE = 0.75
# ...nor one whose words are this many per second of audio at least: a hinted decoding
# that stopped after a word or two (「住民税」 for a forty-character question) is set aside
# by ``TRUNCATED_SHARE`` only beside other readings. A quarter of the 8 characters a
# second of a caller's question, as that share.
SETTLED_CHARS_PER_S = 2.0
# Requests about the call taken from an alternative hypothesis, the first preferred.
CALL_REQUESTS = (ControlIntent.OPERATOR, ControlIntent.REPEAT)
# Requests about the call that the readings the audio supports may set against a decision
# on a reading it does not (never a goodbye, which ends the call, nor a yes or a no)
REQUESTS_OVER_TOPIC = (
    ControlIntent.HOLD,
    ControlIntent.RESUME,
    ControlIntent.OPERATOR,
    ControlIntent.REPEAT,
)
# A hypothesis rated without the hint below this share of the best-rated one is the
# hint's reading more than the audio's (see ``_audio_supported``). Chosen on the
# validation audio (tests/data/eval/CONSTANTS.md).
SUPPORTED_SHARE = 0.4
# An alternative reading the FAQ explains less well still replaces the one taken when the
# audio alone rates it this much higher (see ``Understanding._best``). Chosen on the
# validation audio (tests/data/eval/CONSTANTS.md).
HEARD_BETTER = 0.1
# An answer whose reading the audio alone rates below this share of the reading decoded
# with no hint, when that one points at another entry, is confirmed (see
# ``Understanding._plain_reading_disagrees``). Chosen on the validation audio
# (tests/data/eval/CONSTANTS.md).
PLAIN_SHARE = 0.6
# A hypothesis shorter than this share of the median hypothesis length (of at least
# TRUNCATED_MIN_READINGS) is a decoding that stopped early (see
# ``Understanding._whole_turn``). Chosen on the earlier held-out audio
# (tests/data/eval/CONSTANTS.md).
TRUNCATED_SHARE = 0.25
TRUNCATED_MIN_READINGS = 3
# How many of the nearest entries' titles make the hint of a second listening (see
# ``Understanding._listen_for_topics``). Chosen on the validation audio
# (tests/data/eval/CONSTANTS.md).
TOPIC_HINT_ENTRIES = 3


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

    def understand(
        self,
        text: str,
        alternatives: Sequence[str] = (),
        heard_probability: float | None = None,
        unprompted: Mapping[str, float] | None = None,
    ) -> tuple[Match, Decision]:
        """Match ``text`` and decide what to do with it.

        ``alternatives`` are the recogniser's other hypotheses (n-best). They often differ
        only in kanji or in one sound; the one the FAQ explains best is taken, unless the
        first hypothesis is a request about the call itself (a person, repeat, goodbye).
        ``heard_probability`` is the recogniser's own probability for ``text``: when it is
        low, an answer is confirmed first (``policy.doubt_unsure_hearing``).
        ``unprompted`` (Whisper) gives each hypothesis' probability without the vocabulary
        hint; with it, the hypothesis chosen is judged by its own probability and by how
        many hypotheses point at the same entry. It is looked up only for an answer (the
        only decision it can change), and only for the chosen text (and, when that is
        rated low, the reading decoded with no hint): the recogniser rates a text when it
        is first looked up. A match too weak for a confirmation is still confirmed when
        all of several hypotheses agree on it (``agreed_topic``), and a middling one
        answered when they agree and the audio supports its words (``_agreed_answer``).
        An answer from a reading the audio alone rates clearly below the first one
        (``HEARD_BETTER``), or far below the reading decoded with no hint
        (``PLAIN_SHARE``), when that one points at another entry, is confirmed instead. A
        turn that would not be answered is judged once more on the hypotheses the audio
        itself supports (``_audio_supported``), and, when the recogniser can, after
        listening again with a hint of the topics it is near
        (``_listen_for_topics``). A turn whose first reading asks about paying a charge
        that is not a tax (``Match.outside``) is not answered at all (``_outside``).
        When the recogniser made its main decoding only (``can_hear_more``), the turn is
        decided on that first; the extra decodings are asked for (``hear_more``) and
        everything judged again unless that decision is ``_settled``.
        """
        if getattr(unprompted, "can_hear_more", False):
            # the main decoding alone first: the extra ones only when it is not settled
            # (once they were made, the turn is judged on everything, as it was then)
            if not unprompted.heard_more:  # type: ignore[union-attr]
                settled = self._understand_readings(
                    text, alternatives, heard_probability, unprompted, listen=False
                )
                if self._settled(*settled, unprompted):
                    return settled
            more = unprompted.hear_more()  # type: ignore[union-attr]
            alternatives = (
                *alternatives,
                *(t for t in more if t != text and t not in alternatives),
            )
        return self._understand_readings(text, alternatives, heard_probability, unprompted)

    def _settled(self, match: Match, decision: Decision, unprompted: Mapping[str, float]) -> bool:
        """Whether a decision on the main decoding alone stands without the extra ones: a
        caller's request, or an answer matched at ``SETTLED_SCORE``, not short for its
        audio (``SETTLED_CHARS_PER_S``), whose words the audio supports without the hint
        (``Thresholds.heard``, and ``PLAIN_SHARE``: the plain decoding could not turn it
        into a confirmation).

        The extra decodings check what the titles hint wrote: on garbled audio it gives
        「警示動作へ行って、いつの時点の持ち主に書かるんですか」, matched to the property
        tax at 0.66, and only the other readings, disagreeing, turn that answer into a
        question. A transfer for a staff topic is checked too (the hint writes staff
        topics' titles as fluently as any); asking again or confirming needs them anyway.
        """
        if decision.action not in DOUBTED_ACTIONS:
            return not undecided(decision)
        audio_ms = getattr(unprompted, "audio_ms", None)
        if audio_ms is not None and len(match.text) < SETTLED_CHARS_PER_S * audio_ms / 1000:
            return False
        # heard at least PLAIN_SHARE too, no plain reading could make it a confirmation
        heard = max(self.settings.thresholds.heard, PLAIN_SHARE)
        return (
            decision.score >= SETTLED_SCORE
            and match.text in unprompted
            and unprompted[match.text] >= heard
        )

    def _understand_readings(
        self,
        text: str,
        alternatives: Sequence[str],
        heard_probability: float | None,
        unprompted: Mapping[str, float] | None,
        listen: bool = True,
    ) -> tuple[Match, Decision]:
        """``understand`` on these hypotheses; ``listen``: listening again is allowed."""
        readings = self._whole_turn([text, *alternatives])
        if readings[0] != text:
            heard_probability = None  # it was the dropped reading's
        text, alternatives = readings[0], tuple(readings[1:])
        first = self.matcher.match(text)
        if first.outside:
            return self._outside(first, alternatives)
        match, decision = self._judge(text, alternatives, heard_probability, unprompted)
        if not undecided(decision) or unprompted is None or not listen:
            return match, decision
        more = self._listen_for_topics(decision, [text, *alternatives], unprompted)
        if not more:
            return match, decision
        return self._judge(text, (*alternatives, *more), heard_probability, unprompted)

    def _judge(
        self,
        text: str,
        alternatives: Sequence[str],
        heard_probability: float | None,
        unprompted: Mapping[str, float] | None,
    ) -> tuple[Match, Decision]:
        """The decision on these hypotheses, judged again on the ones the audio supports
        when it would not be an answer.

        The new decision is taken when it is an answer; when it is a request to wait, for a
        person or for a repeat and the first decision's reading was set aside; and
        whatever it is when the first was a transfer for a staff topic that only a
        set-aside reading named: the hinted
        decoding writes a staff topic's title (「ご自身の税額の内訳」 for 「固定資産税の納期」)
        as fluently as an answer's, and a caller handed to staff for a topic never asked
        waits for a person who cannot help, where a confirmation or a question costs a turn.
        """
        match, decision = self._understand(text, alternatives, heard_probability, unprompted)
        if not undecided(decision) or not unprompted or not alternatives:
            return match, decision
        supported = _audio_supported([text, *alternatives], unprompted)
        if supported is None:
            return match, decision
        again = self._understand(supported[0], supported[1:], None, unprompted)
        if again[1].action in DOUBTED_ACTIONS:
            return again
        if match.text not in supported and (
            decision.action is BotAction.TRANSFER or again[1].intent in REQUESTS_OVER_TOPIC
        ):
            # a staff topic only the hint's reading named is not the caller's, and a
            # request the audio supports (「すみません、ちょっと待って」 read as 「住民税、
            # ちょっと待って」) is not a question about the topic the hint put first
            return again
        return match, decision

    def _whole_turn(self, texts: Sequence[str]) -> list[str]:
        """The hypotheses that report the whole turn, in order.

        A hinted decoding sometimes stops after a word or two of the hint: 「住民税」 for a
        question that the other decodings heard as forty characters about a tax that rose
        although the income did not. Taken first, that word alone is answered with the
        residence tax's overview. A hypothesis shorter than ``TRUNCATED_SHARE`` of the
        median length of at least ``TRUNCATED_MIN_READINGS`` hypotheses is set aside,
        unless it is a request about the call (「はい」, 「オペレーター」 are short by nature).
        """
        lengths = sorted(len(t) for t in texts if t)
        if len(lengths) < TRUNCATED_MIN_READINGS:
            return list(texts)
        shortest = TRUNCATED_SHARE * lengths[len(lengths) // 2]
        # never empty: the median-length reading is always kept
        return [
            t
            for t in texts
            if len(t) >= shortest or (t and self.matcher.match(t).control is not None)
        ]

    def _listen_for_topics(
        self, decision: Decision, texts: Sequence[str], unprompted: Mapping[str, float]
    ) -> tuple[str, ...]:
        """New hypotheses from decoding the turn again after a hint of the few entries it
        is near (their titles), when the recogniser offers that (Whisper while free).

        The all-topics hint is long, and on unclear audio its words crowd out the rarer
        ones of the entry the caller means; three titles leave room for them. The
        entries are the decision's candidates or, when it has none (asked again), the
        nearest entries of each hypothesis in turn. What the new decoding writes joins the
        other hypotheses and is judged by the same rules, its probability without the
        hint included.
        """
        listen = getattr(unprompted, "listen_again", None)
        if not callable(listen):
            return ()
        ids = [c.faq_id for c in decision.candidates]
        if not ids:
            for text in texts:
                ids += [
                    c.faq_id for c in self.matcher.match(text).candidates if c.faq_id not in ids
                ]
                if len(ids) >= TOPIC_HINT_ENTRIES:
                    break
        ids = ids[:TOPIC_HINT_ENTRIES]
        if not ids:
            return ()
        hint = "、".join(self.faq[faq_id].title for faq_id in ids) + "。"
        return tuple(t for t in listen(hint) if t not in texts)

    def _understand(
        self,
        text: str,
        alternatives: Sequence[str],
        heard_probability: float | None,
        unprompted: Mapping[str, float] | None,
    ) -> tuple[Match, Decision]:
        match, decision, matched = self._best(text, alternatives, unprompted)
        thresholds = self.settings.thresholds
        if decision.action is BotAction.REPROMPT and decision.intent is None:
            request = self._call_request(matched)
            if request is not None:
                return request
            return match, agreed_topic(decision, matched, thresholds)
        if decision.action is BotAction.CONFIRM and unprompted:
            return match, self._agreed_answer(decision, match, matched, unprompted)
        if decision.action not in DOUBTED_ACTIONS or decision.faq_id is None:
            return match, decision  # nothing a doubt about the hearing would change
        if (
            match.text != text
            and matched[0].top is not None
            and matched[0].top.faq_id != decision.faq_id
            and _heard_better(text, match.text, unprompted)
        ):
            # The reading answered fits the FAQ better, but the first one, which the audio
            # itself supports clearly better, points at another entry: ask, not answer.
            return match, replace(decision, action=BotAction.CONFIRM)
        if self._plain_reading_disagrees(decision, match, matched, unprompted):
            return match, replace(decision, action=BotAction.CONFIRM)
        if unprompted and match.text in unprompted:
            agreement = _agreement(decision, matched)
            return match, doubt_unsure_hearing(
                decision, self.faq, unprompted[match.text], thresholds, agreement
            )
        return match, doubt_unsure_hearing(decision, self.faq, heard_probability, thresholds)

    def _best(
        self,
        text: str,
        alternatives: Sequence[str],
        unprompted: Mapping[str, float] | None = None,
    ) -> tuple[Match, Decision, list[Match]]:
        """The hypothesis the FAQ explains best, its decision, and every match made.

        Another hypothesis replaces the one taken so far only when it is both more
        confidently matched (by ``NBEST_MARGIN``) and at least as well explained by the
        FAQ (its raw similarity). The confidence grows with the gap to the runner-up, and
        a misheard word can widen that gap by taking away the runner-up's evidence:
        「実家の固定資産税の通知を東京の住所に」 is torn between sending certificates by
        post and changing where notices go, and heard as 「コティス産兵の通知を」 it is
        certificates by post alone, at 0.79. Fewer words explained is not more certainty.
        The FAQ may explain the reading taken better because the hint put FAQ words into
        it (「市民税なくなって」 for 「父が亡くなって」): an alternative the audio alone
        supports clearly better (``HEARD_BETTER``, rated without the hint) is taken all
        the same.
        """
        match = self.matcher.match(text)
        matched = [match]
        best = match, decide(match, self.faq, self.settings.thresholds)
        if match.control is not None or not alternatives:
            return *best, matched
        for alt in alternatives:
            alt_match = self.matcher.match(alt)
            matched.append(alt_match)
            if alt_match.control is not None or alt_match.top is None:
                continue
            taken = best[0].top
            if taken is None or (
                alt_match.top.score > taken.score + NBEST_MARGIN
                and (
                    alt_match.top.raw >= taken.raw
                    or _heard_better(alt_match.text, best[0].text, unprompted)
                )
            ):
                best = alt_match, decide(alt_match, self.faq, self.settings.thresholds)
        return *best, matched

    def _plain_reading_disagrees(
        self,
        decision: Decision,
        match: Match,
        matched: Sequence[Match],
        unprompted: Mapping[str, float] | None,
    ) -> bool:
        """Whether the reading decoded with no hint, which the audio alone supports far
        better than the one answered, points at another entry (or at none).

        A hint writes its own words over unclear audio: 「納付書をなくしちゃった」 came out
        of both hinted decodings as the first title of their hints, 「納税証明書」, and
        found by most readings it was answered as the tax certificate. The decoding with
        no hint wrote 「脳不想なくしちゃった」: garbled, but the audio alone rated it more
        than twice as probable, and it pointed at a lost payment slip. When the answered
        reading is rated below ``PLAIN_SHARE`` of that plain one and the two disagree, the
        answer is asked about first. Only a reading rated below ``PLAIN_SHARE`` can be
        (no rating exceeds 1), so the plain reading is rated only then.
        """
        plain = getattr(unprompted, "plain", None)  # always one of its hypotheses
        if unprompted is None or not plain or plain == match.text or match.text not in unprompted:
            return False
        plain_match = next((m for m in matched if m.text == plain), None)
        if plain_match is None:
            return False  # not among the readings judged (set aside as cut short)
        mine = unprompted[match.text]
        if mine >= PLAIN_SHARE or mine >= PLAIN_SHARE * unprompted[plain]:
            return False
        return plain_match.top is None or plain_match.top.faq_id != decision.faq_id

    def _agreed_answer(
        self,
        decision: Decision,
        match: Match,
        matched: Sequence[Match],
        unprompted: Mapping[str, float],
    ) -> Decision:
        """A middling match answered, not confirmed, when the hearing is not in doubt.

        A caller's own phrasing of a question (「家を新築したんですけど、固定資産税って安く
        なるんですか」) shares few words with the FAQ's, so its match stays middling
        however clearly it was heard, and a confirmation costs the caller a turn. When
        the decodings with different hints (at least ``agreed_hypotheses`` distinct
        texts) all land on the same entry, the match does not hang on one reading of
        the words; when the chosen text is also probable from the audio alone
        (``heard_agreed``), the words are the caller's. Then a match from
        ``answer_agreed`` up is answered. A staff topic close to it still means a
        confirmation. The rating without the hint is looked up last, as it costs a pass.
        """
        thresholds = self.settings.thresholds
        top = match.top
        if (
            top is None
            or not thresholds.answer_agreed <= top.score < thresholds.answer
            or staff_topic_near(match.candidates)
            or match.text not in unprompted
            or agreed_entry(matched, thresholds) != top.faq_id
            or unprompted[match.text] < thresholds.heard_agreed
        ):
            return decision
        return replace(decision, action=entry_action(self.faq[top.faq_id]))

    def _outside(self, first: Match, alternatives: Sequence[str]) -> tuple[Match, Decision]:
        """The first reading asks about something that is not a tax (「水道料金をコンビニで」,
        another facility's hours, 住民票の写し): no entry is answered, whatever another
        reading matches. Only a request for staff or a repeat, in it or in another reading,
        is still taken; a goodbye before the question (「ありがとう。それと水道料金は…」) is
        not the caller leaving.
        Otherwise the caller is told that the tax line does not handle it (``NOT_A_TAX``)."""
        thresholds = self.settings.thresholds
        if first.control is not None and first.control.intent in CALL_REQUESTS:
            return first, decide(first, self.faq, thresholds)
        request = self._call_request([first, *map(self.matcher.match, alternatives)])
        if request is not None:
            return request
        return first, Decision(BotAction.NOT_A_TAX, None, 0.0, BotAction.NOT_A_TAX.value)

    def _call_request(self, matched: Sequence[Match]) -> tuple[Match, Decision] | None:
        """A request for a person or a repeat that only another hypothesis heard, when the
        first gave nothing to act on.

        Noise bends the words of such requests (「機械じゃなくて」 as 機会, 代わって as
        変わって) and one decoding may keep them where another loses them. Either costs
        little if wrong (a transfer, the last words again), and asking again instead makes
        a caller who wants a person repeat it. A goodbye is never taken this way.
        """
        for wanted in CALL_REQUESTS:
            for alt in matched[1:]:
                if alt.control is None or alt.control.intent is not wanted:
                    continue
                decision = decide(alt, self.faq, self.settings.thresholds)
                if decision.action in (BotAction.TRANSFER, BotAction.REPEAT):
                    return alt, decision
        return None


def _heard_better(text: str, than: str, unprompted: Mapping[str, float] | None) -> bool:
    """Whether the audio alone (no hint) supports ``text`` clearly better than ``than``;
    each is rated when first looked up."""
    if not unprompted or text not in unprompted or than not in unprompted:
        return False
    return unprompted[text] >= unprompted[than] + HEARD_BETTER


def undecided(decision: Decision) -> bool:
    """Whether a decision leaves the turn to be looked at again: not an answer, and not a
    request about the call (a person, a repeat, a goodbye)."""
    return decision.action not in DOUBTED_ACTIONS and decision.intent in (None, "faq")


def _audio_supported(texts: Sequence[str], unprompted: Mapping[str, float]) -> list[str] | None:
    """The hypotheses the audio itself supports, in order; None when that is all of them.

    On unclear audio the hinted decodings write fluent FAQ words (「ご自身の税額の内訳」
    for 「固定資産税って年に何回」) that the audio alone makes far less probable than
    the plain decoding's reading, and their entry, disagreeing with the others, keeps a
    clearly asked question from being answered. A hypothesis rated without the hint at
    less than ``SUPPORTED_SHARE`` of the best-rated one is set aside; the rest are judged
    again by the same rules (agreement, probability without the hint), and their
    decision is taken when it is an answer or the first was a transfer that rested on a
    set-aside reading (``Understanding._judge``). Every hypothesis is rated for this, in
    one pass, and only for turns that would not be answered.
    """
    rate_all = getattr(unprompted, "rate_all", None)
    ratings = rate_all(texts) if callable(rate_all) else unprompted
    rated = {text: ratings.get(text, 0.0) for text in dict.fromkeys(texts)}
    best = max(rated.values(), default=0.0)
    if best <= 0.0:
        return None
    kept = [text for text, p in rated.items() if p >= SUPPORTED_SHARE * best]
    return kept if len(kept) < len(rated) else None


def agreed_topic(decision: Decision, matched: Sequence[Match], thresholds: Thresholds) -> Decision:
    """A match too weak to confirm on its own is confirmed when the recogniser's distinct
    hypotheses, from decodings with different hints, all point at the same entry.

    An unfamiliar phrasing of a clear question (「会社で特別徴収っていうのに…」 heard as
    特別調査) scores low with the FAQ whichever way it is heard; asking the caller to say
    it again gets the same words. When every decoding lands on one entry, a yes/no
    question about that entry recovers the turn; a caller who says no is asked again.
    A lone transcript (text, or a recogniser under load) never qualifies.
    """
    entry = agreed_entry(matched, thresholds)
    if entry is None:
        return decision
    weakest = min(m.top.score for m in matched if m.text and m.top)
    if weakest < thresholds.confirm_agreed:
        return decision
    return replace(decision, action=BotAction.CONFIRM, faq_id=entry, score=weakest)


def agreed_entry(matched: Sequence[Match], thresholds: Thresholds) -> str | None:
    """The entry every distinct hypothesis points at, when there are at least
    ``agreed_hypotheses`` of them and none is a request about the call; else None."""
    tops = [m.top for m in matched if m.text]
    if len(tops) < thresholds.agreed_hypotheses or any(m.control for m in matched):
        return None
    if None in tops or len({top.faq_id for top in tops}) != 1:
        return None
    return tops[0].faq_id


def _agreement(decision: Decision, matched: Sequence[Match]) -> float:
    """The share of the distinct hypotheses whose best entry is the decision's."""
    tops = {m.text: m.top for m in matched if m.text}
    if not tops or decision.faq_id is None:
        return 0.0
    return sum(1 for top in tops.values() if top and top.faq_id == decision.faq_id) / len(tops)
