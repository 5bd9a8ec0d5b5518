"""Japanese text normalisation for matching what callers say.

Speech recognition output and FAQ questions differ in ways that carry no meaning:
full/half width, hesitations (えーと、あのー), politeness (〜んですけど、〜でしょうか),
punctuation. Removing those first lets the scorer look only at content.
"""

from __future__ import annotations

import re
import unicodedata

# Hesitations and openers that carry no content. Matched as whole leading words
# (or after punctuation) so that words like その他 stay intact.
_FILLERS = (
    "えーっと",
    "えーと",
    "ええと",
    "えっと",
    "えと",
    "あのですね",
    "あのー",
    "あの",
    "そのー",
    "えー",
    "ええ",
    "あー",
    "うーん",
    "うん",
    "んー",
    "まあ",
    "まぁ",
    "もしもし",
    "すみません",
    "すいません",
    "すみませんが",
    "恐れ入ります",
    "恐れ入りますが",
    "お忙しいところ",
    "ちょっと",
    "ちょっとお聞きしたいんですが",
    "ちょっと聞きたいんですが",
    "実は",
    "なんか",
)
_FILLER_RE = re.compile(
    "^(?:" + "|".join(sorted(map(re.escape, _FILLERS), key=len, reverse=True)) + ")+"
)
# Polite sentence endings, removed from the end repeatedly.
_ENDINGS = (
    "でしょうか",
    "ですけれども",
    "ですけども",
    "ですけど",
    "ですが",
    "ますか",
    "ですか",
    "ません",
    "ました",
    "ます",
    "です",
    "やろか",
    "やろ",
    "やけど",
    "ねん",
    "ください",
    "下さい",
    "ね",
    "よ",
    "か",
    "けど",
    "が",
    "んで",
    "の",
    "ん",
)
_ENDING_RE = re.compile("(?:" + "|".join(map(re.escape, _ENDINGS)) + ")$")
_PUNCT_RE = re.compile(r"[\s、。，．,.!！?？・「」『』（）()\[\]【】〜~…‥:：;；\"'“”‘’]+")
_LONG_RUN_RE = re.compile(r"ー{2,}")


def nfkc(text: str) -> str:
    """Unicode NFKC (full-width ascii and half-width kana to standard) and lower case.

    A lone surrogate (undecodable bytes in a command-line argument) becomes 「?」: the
    readings library cannot encode one and would fail the whole question."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return unicodedata.normalize("NFKC", text).lower()


def split_clauses(text: str) -> list[str]:
    """Split on punctuation and spaces; recognisers put those at pauses."""
    return [c for c in _PUNCT_RE.split(nfkc(text)) if c]


def strip_fillers(clause: str) -> str:
    """Remove leading hesitations from one clause."""
    return _FILLER_RE.sub("", clause)


# A polite negative at the end of a statement: its negation is content (払えません is
# 払えない, not 払え). Not before か: 「できませんか」 is a polite request, not a denial.
_NEGATIVES = {
    "ありませんでした": "なかった",
    "ませんでした": "なかった",
    "ありません": "ない",
    "ません": "ない",
}
_NEGATIVE_RE = re.compile("(?:" + "|".join(map(re.escape, _NEGATIVES)) + ")$")


def strip_endings(clause: str, max_rounds: int = 4) -> str:
    """Remove trailing polite endings (〜んですけど → ∅) so only content remains; a
    statement's polite negative becomes plain ない (払えそうにありません → 払えそうにない)."""
    question = False
    for _ in range(max_rounds):
        if not question and _NEGATIVE_RE.search(clause):
            return _NEGATIVE_RE.sub(lambda m: _NEGATIVES[m.group()], clause)
        shorter = _ENDING_RE.sub("", clause)
        if shorter == clause or len(shorter) < 2:
            break
        question = question or clause.endswith("か")
        clause = shorter
    return clause


# Western Japanese forms of common grammar, in standard Japanese: many callers speak them
# and the FAQ is written in the standard language. Only where they are no other word:
# - a negative へん / へんかった after the stem of a verb (届かへん, 払えへんかった), not
#   へんな (strange), 〜がへん (計算がへん, strange) or ここらへん (about here);
# - 〜んで(も)ええ, need not (払わんでええ, せんでええ), not after た or な, where ん is の
#   (払ったんで, なんで); with いい or よい not after さ either, where さん is an honorific
#   (奥さんでいい);
# - しもうて / しもた after a 〜て form (捨ててしもた), not もしもたとえば;
# - どない, how, not the ない after けど, ほど, など, ほとんど or ちょうど (探したけどないんです);
# - もうた / もうて, the same しまった after a 〜て form (払うてもうた), not でもたぶん;
# - the う-verbs' past and て forms in う (払うた, 買うて, もろた), not 払うため or 買うたび;
# - 〜とる / 〜とった / 〜とらん (〜どる after ん), the western progressive (落ちとった,
#   届いとらん, 済んどる), only after a verb's 〜て stem, where とる is not 取る
#   (証明書をとった, 受けとった);
# - Kyushu's どげん (how), どげんして (by what means).
_VERB_STEM = "かさたなばまらえけげてねべめれ"
_U_VERB = "払買使言会違思貰"
# A 〜て stem before the western progressive: not け, き, み or り, whose 〜とる is as often
# 取る written in kana (受けとる, 引きとる, 読みとる, 切りとる), nor the い of 買い (買いとる).
_PROGRESSIVE = "(?<=[っいちしびえせてねべめれ来見出寝])(?<!買い)"
_DIALECT = (
    (re.compile(r"せん(?:でも|で)ええ"), "しなくてもいい"),
    (re.compile(r"([わかさがばまらえけげてねべめれ])ん(?:でも|で)ええ"), "\\1なくてもいい"),
    (re.compile(r"([わかがばまらえけげてねべめれ])ん(?:でも|で)(?:いい|よい)"), "\\1なくてもいい"),
    (re.compile(f"(?<![こそど])([{_VERB_STEM}])へんかった"), "\\1なかった"),
    (re.compile(f"(?<![こそど])([{_VERB_STEM}])へん(?!な)"), "\\1ない"),
    (re.compile(r"(?<=[てで])しもう?た"), "しまった"),
    (re.compile(r"(?<=[てで])しもうて"), "しまって"),
    (re.compile(r"(?<![けほなんう])どない"), "どう"),
    (re.compile(r"(?<=払え|でき)んかった"), "なかった"),  # 払えん, できん: cannot
    (re.compile(r"(?<=払え|でき)ん(?![ぼでか])(?!の$)"), "ない"),
    (re.compile(r"どげんして"), "どうやって"),
    (re.compile(r"どがいな"), "どんな"),
    (re.compile(r"どがいに"), "どう"),
    # 〜っちゅう, quoting: before のは, 話, こと or a noun (納めたっちゅう証明書)
    (
        re.compile(r"(?<!しょ)っ?ちゅう(?=のは|話|こと)|(?<=[たるいだ])っちゅう(?=[一-龥])"),
        "という",
    ),
    (re.compile(r"(?<=[安高低早遅])う(?=な[るっり])"), "く"),  # 安うなる
    (re.compile(r"新しゅう"), "新しく"),
    (re.compile(r"どげん"), "どう"),
    (re.compile(r"(?<=[てで])もうた(?!ぶん|しか|いへん|くさん)"), "しまった"),
    (re.compile(r"(?<=[てで])もうて"), "しまって"),
    (re.compile(f"([{_U_VERB}])う([たて])(?![めび])"), "\\1っ\\2"),
    (re.compile(r"もろ([たて])"), "もらっ\\1"),
    (re.compile(f"{_PROGRESSIVE}とっ([たて])"), "てい\\1"),
    (re.compile(f"{_PROGRESSIVE}とら(?:ん|へん|な)かった"), "ていなかった"),
    (re.compile(f"{_PROGRESSIVE}とら(?:ん|へん|ない)"), "ていない"),
    (re.compile(f"{_PROGRESSIVE}とる"), "ている"),
    (re.compile(r"(?<=ん)どっ([たて])"), "でい\\1"),  # 済んどった, 申し込んどる
    (re.compile(r"(?<=ん)どら(?:ん|へん|ない)"), "でいない"),
    (re.compile(r"(?<=ん)どる"), "でいる"),
)


def standard_forms(text: str) -> str:
    """Western Japanese grammar (``_DIALECT``) in its standard form."""
    for pattern, standard in _DIALECT:
        text = pattern.sub(standard, text)
    return text


def normalize(text: str) -> str:
    """Content-only surface form: width/case folded, no punctuation, fillers or politeness;
    western Japanese grammar in its standard form."""
    clauses = [standard_forms(strip_fillers(c)) for c in split_clauses(text)]
    joined = "".join(_LONG_RUN_RE.sub("ー", c) for c in clauses if c)
    return strip_endings(joined)
