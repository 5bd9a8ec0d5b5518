"""Matching what a caller said to FAQ entries.

Three kinds of evidence are combined for each entry:

* similarity to its closest example question (character n-grams of the surface
  text and of the sound key, TF-IDF weighted, cosine);
* similarity to all of its questions pooled (robust when the caller mixes phrasings);
* its keywords found in the utterance, exactly or fuzzily by sound, each weighted
  by how specific it is to that entry (a word shared by many entries counts little).

Sound keys make wrong-kanji recognitions (農夫書 for 納付書) still match; a caller's
text gets the keys of two readings when they differ (``faq.reading.sound_keys``), and a
third where kanji the dictionaries know only one by one are read by on'yomi
(``faq.onyomi``: 進告 → シンコク for 申告). Errors that keep no sounds (古典市産税 for
固定資産税) match through how the recogniser heard the FAQ's own questions
(``faq.heard``), indexed as extra phrasings of them. The raw
score is mapped to a confidence in [0, 1] by a logistic calibration fitted on the
FAQ's own questions held out one at a time (see ``bench/calibrate.py``), so that
"0.9" means right about nine times in ten.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import fuzz, process

from faq.aspects import (
    CERTIFICATE_REQUEST,
    DESTINATION,
    UNCERTIFIED_TAXES,
    UNCOVERED_TAXES,
    asks_other_document,
    asks_other_facility,
    aspects,
    certificate_entry,
    certificates_named,
    complains_of_neighbours_property,
    named_outright,
    pays_other_charge,
    subjects,
    taxes_named,
)
from faq.corrections import taken_back
from faq.heard import HeardQuestion, load_heard
from faq.intents import ControlMatch, find_control
from faq.model import Action
from faq.morphology import content_lemmas
from faq.normalize import normalize
from faq.onyomi import OnyomiReader
from faq.postings import ColumnPostings
from faq.reading import sound_keys, unvoice, word_sounds
from faq.store import Faq
from faq.synonyms import SynonymRewriter

# Weights of the three kinds of evidence in the raw score.
W_QUESTION = 0.35
W_ENTRY = 0.35
W_KEYWORD = 0.30
KEYWORD_SATURATION = 2.0  # keyword evidence 1 - exp(-sum / this)
ANSWER_WEIGHT = 2.0  # the answer's share of an entry's pooled vector
FUZZY_MIN = 70.0  # partial_ratio below this is no evidence
FUZZY_EXP = 2.0  # how fast fuzzy evidence grows above FUZZY_MIN
FUZZY_MIN_LEN = 5  # shorter keys only match exactly
# The recogniser often mishears voicing alone (督促 as 独足, 相続 as 装足: ト/ド, ゾ/ソ),
# which the fuzzy ratio counts as an ordinary miss (75 for ソソクゼ against ソゾクゼ). A
# keyword whose sound the utterance holds with voicing marks ignored is partial evidence;
# shorter keys than this collide with other words that way.
UNVOICED_MIN_LEN = 4
UNVOICED_STRENGTH = 0.5
# An entry whose title names one tax (住民税の納期) is about that tax only: when the caller
# names taxes outright and not that one (法人の市民税の納期), its score is scaled by this.
# Shared words and question aspects otherwise let the entry win on everything but the
# subject. Entries whose titles name no tax (納付方法, 証明書の手数料) are never scaled;
# a question about paying a charge that is not a tax (水道料金) matches no entry at all.
# A title that names no tax but belongs to one (車検用の納税証明書) takes its tags' tax.
# The same holds for the certificate a title names (納税証明書 against 所得証明書).
SUBJECT_CONFLICT = 0.7


@dataclass(frozen=True)
class Calibration:
    """Logistic map from (raw top score, margin to the second) to a confidence."""

    bias: float
    w_raw: float
    w_margin: float

    def confidence(self, raw: float, margin: float) -> float:
        z = self.bias + self.w_raw * raw + self.w_margin * margin
        return 1.0 / (1.0 + math.exp(-z))


# Fitted by `python bench/calibrate.py` on the shipped FAQ (leave-one-question-out, as
# written and as recognised, plus out-of-domain phrases); refit after large FAQ changes.
DEFAULT_CALIBRATION = Calibration(bias=-2.527, w_raw=6.262, w_margin=9.471)
# Matches kept per matcher (a call's hypotheses of a few turns, for all calls at once).
RECENT_MATCHES = 256


@dataclass(frozen=True)
class Candidate:
    """One FAQ entry as a possible meaning of the utterance."""

    faq_id: str
    title: str
    action: Action
    score: float  # calibrated confidence in [0, 1]
    raw: float  # uncalibrated combined similarity


@dataclass(frozen=True)
class Match:
    """Everything the matcher found in one utterance."""

    text: str
    normalized: str
    key: str
    candidates: list[Candidate]
    control: ControlMatch | None = None
    features: dict[str, float] = field(default_factory=dict)
    # It asks about something no entry is for: paying a charge that is not a tax.
    outside: bool = False

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


_SparseDoc = tuple[np.ndarray, np.ndarray]  # (column ids, values)

ASPECT_TF = 3  # an aspect counts like a few shared n-grams
LEMMA_TF = 2  # a shared content word counts like two n-grams


def _features(surface: str, key: str) -> Counter[str]:
    """Character n-gram features (kanji unigrams, surface bigrams, sound-key bi/trigrams)
    plus the question's aspects."""
    feats: Counter[str] = Counter()
    for name in aspects(surface, key):
        feats["@" + name] = ASPECT_TF
    for lemma in content_lemmas(surface):
        feats["w" + lemma] += LEMMA_TF
    for ch in surface:
        if "\u4e00" <= ch <= "\u9fff":
            feats["u" + ch] += 1
    for i in range(len(surface) - 1):
        feats["b" + surface[i : i + 2]] += 1
    for n in (2, 3):
        for i in range(len(key) - n + 1):
            feats[f"k{key[i : i + n]}"] += 1
    return feats


class Matcher:
    """Ranks FAQ entries for an utterance. Build once per FAQ version; matching is read-only."""

    def __init__(
        self,
        faq: Faq,
        calibration: Calibration = DEFAULT_CALIBRATION,
        heard: list[HeardQuestion] | None = None,
    ):
        self.faq = faq
        self.heard = load_heard() if heard is None else heard
        self.calibration = calibration
        self._recent: OrderedDict[tuple[str, int], Match] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.rewrite = SynonymRewriter(faq.synonyms)
        self.rewrite_sound = self.rewrite.by_sound()
        self.entries = list(faq.entries)
        self.onyomi = OnyomiReader(
            text
            for e in self.entries
            for text in (e.title, *e.questions, *e.keywords, faq.answer_text(e))
        )
        self._build()

    # -- preparation -------------------------------------------------------------------
    def prepare(self, text: str) -> tuple[str, str]:
        """(normalised surface with synonyms rewritten, its sound key)."""
        surface, keys = self.prepare_keys(text)
        return surface, keys[0]

    def prepare_keys(self, text: str) -> tuple[str, tuple[str, ...]]:
        """(normalised surface with synonyms rewritten, its sound keys by each reading)."""
        surface = self.rewrite(named_outright(normalize(taken_back(text))))
        keys = sound_keys(surface)
        by_onyomi = self.onyomi.key(surface)
        if by_onyomi:
            keys = (*keys, by_onyomi)
        return surface, tuple(dict.fromkeys(self.rewrite_sound(k) for k in keys))

    def _build(self) -> None:
        titles = [self.prepare(e.title)[0] for e in self.entries]
        # the taxes a title names; for a title that names none, those its tags name (車検用の
        # 納税証明書 is the light vehicle's, not the prefecture's car tax)
        self.entry_subjects = [
            frozenset(subjects(t) or subjects(self.prepare(" ".join(e.tags))[0]))
            for t, e in zip(titles, self.entries, strict=True)
        ]
        self.entry_certificates = [certificate_entry(t) for t in titles]
        # entries about certificates at all (証明書の郵送請求, 代理人による証明書の請求)
        self.entry_of_certificates = np.array(["証明" in t for t in titles])
        # entries about the tax office's counter itself (窓口の場所と受付時間)
        self.entry_of_counter = np.array(["窓口" in t for t in titles])
        # Features become column ids as soon as they are made and documents stay sparse:
        # the written and heard phrasings are thousands of rows over ~20,000 features.
        self.vocab: dict[str, int] = {}
        docs: list[_SparseDoc] = []
        self.doc_entry: list[int] = []
        entry_keys: list[str] = []
        answers: list[_SparseDoc] = []
        # (entry id, title or question) -> its document, to hold it out (calibration)
        self.doc_of: dict[tuple[str, str], int] = {}
        for ei, entry in enumerate(self.entries):
            keys = []
            for t in (entry.title, *entry.questions):
                # The FAQ is written correctly: the first reading is its reading.
                surface, key = self.prepare(t)
                self.doc_of.setdefault((entry.id, t), len(docs))
                docs.append(self._encode(_features(surface, key)))
                self.doc_entry.append(ei)
                keys.append(key + "|" + surface)
            entry_keys.append("|".join(keys))
            answers.append(self._encode(_features(*self.prepare(self.faq.answer_text(entry)))))
        # How the recogniser heard the questions: extra phrasings of the same question.
        heard_docs: list[_SparseDoc] = []
        heard_group: list[int] = []
        seen = {(doc, normalize(question)) for (_, question), doc in self.doc_of.items()}
        for row in self.heard:
            doc = self.doc_of.get((row.entry_id, row.question))
            if doc is None:
                continue  # the FAQ no longer has this question
            if (doc, normalize(row.heard)) in seen:
                continue  # heard as written (or as another recognition of it)
            seen.add((doc, normalize(row.heard)))
            surface, keys = self.prepare_keys(row.heard)
            for key in keys:
                heard_docs.append(self._encode(_features(surface, key)))
                heard_group.append(doc)
        all_docs = (*docs, *answers, *heard_docs)
        df = np.bincount(np.concatenate([ids for ids, _ in all_docs]), minlength=len(self.vocab))
        self.idf = (np.log((len(all_docs) + 1) / (df + 1.0)) + 1.0).astype(np.float32)
        doc_rows = [self._weighted(d) for d in docs]
        self.doc_postings = ColumnPostings(doc_rows, len(self.vocab))
        self.doc_entry_arr = np.array(self.doc_entry)
        self.heard_postings = ColumnPostings(
            [self._weighted(d) for d in heard_docs], len(self.vocab)
        )
        self.heard_group = np.array(heard_group, dtype=np.int64)
        self.heard_entry_arr = self.doc_entry_arr[self.heard_group]
        # An entry as a whole: its questions, plus its answer at a lower weight (callers
        # often use the answer's words: 「別の住所に送ってほしい」).
        sums = np.zeros((len(self.entries), len(self.vocab)), dtype=np.float32)
        for ei, (ids, weights) in enumerate(self._weighted(d) for d in answers):
            sums[ei, ids] += ANSWER_WEIGHT * weights
        for ei, (ids, weights) in zip(self.doc_entry, doc_rows, strict=True):
            sums[ei, ids] += weights
        self.entry_sums = sums
        self.entry_matrix = sums / (np.linalg.norm(sums, axis=1, keepdims=True) + 1e-9)

        # Keywords: each distinct (surface, key) once, with the entries that list it.
        kw_index: dict[tuple[str, str], list[int]] = {}
        for ei, entry in enumerate(self.entries):
            for kw in {*entry.keywords, entry.title}:
                surface, key = self.prepare(kw)
                if key:
                    kw_index.setdefault((surface, key), []).append(ei)
        n_entries = len(self.entries)
        self.kw_surface: list[str] = []
        self.kw_keys: list[str] = []
        self.kw_weight: list[float] = []
        self.kw_entries: list[list[int]] = []
        for (surface, key), owners in kw_index.items():
            # A keyword is evidence for every entry whose questions use it, not only the
            # entry that lists it: 固定資産税 must not pull every question to one entry.
            users = {ei for ei, k in enumerate(entry_keys) if key in k or surface in k}
            users |= set(owners)
            idf = math.log(1.0 + n_entries / len(users))
            self.kw_surface.append(surface)
            self.kw_keys.append(key)
            self.kw_weight.append(idf * min(1.0, len(key) / 3.0))
            self.kw_entries.append(sorted(users))
        self.kw_unvoiced = [unvoice(k) for k in self.kw_keys]

    def _encode(self, feats: Counter[str]) -> _SparseDoc:
        """(column ids, term counts) of a document, adding new features to the vocabulary."""
        ids = np.fromiter(
            (self.vocab.setdefault(f, len(self.vocab)) for f in feats), np.int64, len(feats)
        )
        return ids, np.fromiter(feats.values(), np.float32, len(feats))

    def _weighted(self, doc: _SparseDoc) -> _SparseDoc:
        """(column ids, L2-normalised TF-IDF weights) of an encoded document."""
        ids, tfs = doc
        weights = (1.0 + np.log(tfs)) * self.idf[ids]
        return ids, weights / (float(np.linalg.norm(weights)) + 1e-9)

    # -- scoring -----------------------------------------------------------------------
    def _query_vector(self, surface: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        feats = _features(surface, key)
        idx, vals, norm2 = [], [], 0.0
        for f, tf in feats.items():
            j = self.vocab.get(f)
            # Unknown n-grams still count in the norm: they are content the FAQ lacks.
            w = (1.0 + math.log(tf)) * (
                float(self.idf[j]) if j is not None else float(self.idf.max())
            )
            norm2 += w * w
            if j is not None:
                idx.append(j)
                vals.append(w)
        norm = math.sqrt(norm2) or 1.0
        return np.array(idx, dtype=np.int64), np.array(vals, dtype=np.float32) / norm

    def _keyword_scores(self, surface: str, key: str) -> np.ndarray:
        sums = np.zeros(len(self.entries), dtype=np.float32)
        if not key:
            return sums
        unvoiced = unvoice(key)
        words = word_sounds(surface)
        fuzzy = process.cdist([key], self.kw_keys, scorer=fuzz.partial_ratio, dtype=np.float32)[0]
        for k, kw_key in enumerate(self.kw_keys):
            if self.kw_surface[k] in surface:
                strength = 1.0
            elif kw_key in key:
                if words.has_word(kw_key) is False:
                    continue  # heard only across words (障害 in 証明書が要る): not this word
                strength = 1.0
            elif (
                len(kw_key) >= UNVOICED_MIN_LEN
                and self.kw_unvoiced[k] in unvoiced
                and words.unvoiced().has_word(self.kw_unvoiced[k]) is not False
            ):
                strength = UNVOICED_STRENGTH
            elif len(kw_key) >= FUZZY_MIN_LEN and fuzzy[k] >= FUZZY_MIN:
                strength = ((fuzzy[k] - FUZZY_MIN) / (100.0 - FUZZY_MIN)) ** FUZZY_EXP * 0.8
            else:
                continue
            for ei in self.kw_entries[k]:
                sums[ei] += self.kw_weight[k] * strength
        return 1.0 - np.exp(-sums / KEYWORD_SATURATION)

    def raw_scores(self, text: str, exclude_doc: int | None = None) -> np.ndarray:
        """Combined raw score per entry. ``exclude_doc`` holds one example question out."""
        surface, keys = self.prepare_keys(text)
        return self._best_raw(surface, keys, exclude_doc)

    def _best_raw(
        self, surface: str, keys: tuple[str, ...], exclude_doc: int | None = None
    ) -> np.ndarray:
        """Raw scores by the reading that agrees best with each entry (for wrong-kanji
        compounds only one of the readings is the sounds the caller made)."""
        raw = self._raw(surface, keys[0], exclude_doc)
        for key in keys[1:]:
            raw = np.maximum(raw, self._raw(surface, key, exclude_doc))
        taxes = taxes_named(surface)
        # only taxes no entry covers are named (市たばこ税の申告, 不動産取得税の減免): an
        # entry about another tax is set back twice, and so is every entry of no tax
        uncovered = bool(taxes) and taxes <= UNCOVERED_TAXES
        for named, owns, factor in (
            (taxes, self.entry_subjects, SUBJECT_CONFLICT ** (2 if uncovered else 1)),
            (certificates_named(surface), self.entry_certificates, SUBJECT_CONFLICT),
        ):
            if named:
                for ei, own in enumerate(owns):
                    if own and not own & named:
                        raw[ei] *= factor
        if uncovered:
            # the city certifies its own taxes paid (入湯税の納税証明書), not the prefecture's
            # nor the customs'; its counter serves every tax
            certified = not taxes & UNCERTIFIED_TAXES
            for ei, own in enumerate(self.entry_subjects):
                if own or self.entry_of_counter[ei]:
                    continue
                if not (certified and self.entry_of_certificates[ei]):
                    raw[ei] *= SUBJECT_CONFLICT**2
        # mail to be sent to an address, nothing of a certificate or a request by post
        # (税金の通知を私の家に送って): the notices' destination, not a certificate by post
        if DESTINATION.search(surface) and not CERTIFICATE_REQUEST.search(surface):
            raw[self.entry_of_certificates] *= SUBJECT_CONFLICT
        return raw

    def _raw(self, surface: str, key: str, exclude_doc: int | None = None) -> np.ndarray:
        idx, vals = self._query_vector(surface, key)
        n = len(self.entries)
        if len(idx) == 0:
            return np.zeros(n, dtype=np.float32)
        doc_sims = self.doc_postings.dot(idx, vals)
        entry_sims = self.entry_matrix[:, idx] @ vals
        if exclude_doc is not None:
            doc_sims[exclude_doc] = -1.0
            ei = self.doc_entry[exclude_doc]
            rest = self.entry_sums[ei] - self.doc_postings.row_vector(exclude_doc)
            rest_norm = float(np.linalg.norm(rest)) or 1.0
            entry_sims[ei] = float(rest[idx] @ vals) / rest_norm
        best_q = np.full(n, -1.0, dtype=np.float32)
        np.maximum.at(best_q, self.doc_entry_arr, doc_sims)
        if len(self.heard_group):
            # a recognised phrasing counts like a written one for its question
            heard_sims = self.heard_postings.dot(idx, vals)
            if exclude_doc is not None:
                heard_sims[self.heard_group == exclude_doc] = -1.0
            np.maximum.at(best_q, self.heard_entry_arr, heard_sims)
        kw = self._keyword_scores(surface, key)
        return W_QUESTION * best_q + W_ENTRY * entry_sims + W_KEYWORD * kw

    def rank(self, raw: np.ndarray, top_k: int = 3) -> list[Candidate]:
        order = np.argsort(-raw)[: max(top_k, 2)]
        top_raw = float(raw[order[0]])
        second = float(raw[order[1]]) if len(order) > 1 else 0.0
        out = []
        for rank_pos, ei in enumerate(order[:top_k]):
            r = float(raw[ei])
            # The margin is what separates a confident answer from a guess between two.
            margin = r - second if rank_pos == 0 else r - top_raw
            entry = self.entries[ei]
            out.append(
                Candidate(
                    faq_id=entry.id,
                    title=entry.title,
                    action=entry.action,
                    score=round(self.calibration.confidence(r, margin), 4),
                    raw=round(r, 4),
                )
            )
        return out

    def match(self, text: str, top_k: int = 3) -> Match:
        """Rank entries for ``text`` and note any control intent (operator, repeat, ...).

        The last ``RECENT_MATCHES`` results are kept: a call matches its hypotheses once
        off its event loop and the dialogue then asks for the same ones on it.
        """
        key = (text, top_k)
        with self._recent_lock:
            found = self._recent.get(key)
            if found is not None:
                self._recent.move_to_end(key)
                return found
        found = self._match(text, top_k)
        with self._recent_lock:
            self._recent[key] = found
            while len(self._recent) > RECENT_MATCHES:
                self._recent.popitem(last=False)
        return found

    def _match(self, text: str, top_k: int) -> Match:
        surface, keys = self.prepare_keys(text)
        outside = (
            pays_other_charge(surface, keys[0])
            or asks_other_facility(surface)
            or asks_other_document(surface, keys[0])
            or complains_of_neighbours_property(surface)
        )
        return Match(
            text=text,
            normalized=surface,
            key=keys[0],
            # outside the FAQ, however near its words are: no entry at all (a choice reply
            # takes the first candidate as named)
            candidates=[] if outside else self.rank(self._best_raw(surface, keys), top_k),
            control=find_control(text),
            outside=outside,
        )
