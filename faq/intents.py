"""Control intents: what a caller says about the call rather than about taxes.

Asking for a person, asking to hear it again, asking the bot to wait, checking
the line (「もしもし」), saying goodbye, and yes/no to a confirmation. These are
small closed sets, so explicit patterns are clearer and safer than similarity
scores; a pattern on the sound key as well catches recognitions with the wrong
kanji (担当者 → 担当車).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from faq.normalize import nfkc, split_clauses, strip_fillers
from faq.reading import sound_key


class ControlIntent(StrEnum):
    OPERATOR = "operator"  # wants a person now
    REPEAT = "repeat"  # wants the last thing said again
    HOLD = "hold"  # asks the bot to wait (「ちょっと待ってください」) while they fetch something
    RESUME = "resume"  # checks the line or is back (「もしもし」, 「お待たせしました」)
    GOODBYE = "goodbye"  # is done
    YES = "yes"
    NO = "no"


@dataclass(frozen=True)
class ControlMatch:
    """A control intent found in an utterance, and the content left once its phrase is removed."""

    intent: ControlIntent
    phrase: str
    residual: str


_PERSON = (
    r"(?:担当(?:者|の方|の人|の職員|の係)?|係(?:の(?:方|人))?|係員|職員(?:の方|さん)?"
    r"|人間|(?<![一-龥])人|方|窓口の(?:方|人)|オペレーター?|スタッフ)"  # not 主人, 本人
)
# 「家の人に代わります」 hands the phone to someone at home: the caller's doing, not a request.
_TALK = r"(?:話|はな|代わ|かわ|替わ|変わ|つな|繋|取り次|とりつ|相談|聞)(?!ります)"
# Someone who can only be staff: no bare 方 or 人 (「払い方をお願いします」 asks for a method).
_STAFF = (
    r"(?:担当(?:者|の方|の人|の職員|の係)?|係(?:の(?:方|人))|係員|職員(?:の方|さん)?"
    r"|人間|窓口の(?:方|人)|オペレーター?|スタッフ)"
)
# Asking for something to be done: the plain, polite and misheard (もらいます) forms.
_PLEASE = (
    r"(?:ください|下さい|くれ|もらえ|もらい|ほしい|欲しい"
    r"|(?:いただ|頂)け(?:ます|ません|ない|る))"  # not 「変わっていただけで」 (only changed)
)
# Asking to be waited for (「ちょっと待ってください」) is the whole utterance, give or take a
# word before it. A wait with an object or a time (「支払いを待ってもらえませんか」, 「来月
# まで待って」) asks to defer a payment, and so does a favour asked in the negative or with
# time in it (「もう少し待っていただけませんか」, 「しばらく待って」): a person takes those,
# and the bot's 「お待ちします」 must not sound like agreeing to them.
_WAIT = (
    # 「待ちください」 and 「待ってもらいますか」: お and え as a recogniser may lose them.
    r"(?:(?:待|ま)っ(?:て|てて|とって|といて)|待て(?=くだ|下さ)|お待ち|待ち(?=くだ|下さ))"
    r"(?:くださいませ|ください|下さい|くれ(?!ん)|もらえ(?!ん)|もらい(?=ますか)|もらって(?:も)?いい"
    r"|いただ(?:け|いて(?:も)?(?:よろしい|いい))|頂け|ちょうだい|を)?"
    r"(?:ます)?(?:です)?(?:でしょう)?(?:か)?(?:ね|な|よ|かね|かな)?"
)
_WAITS = rf"(?:{_WAIT})+(?:お願いします)?"
_BEFORE_WAIT = (
    r"^(?:はい|ええ|あっ?|いや|すみません|すいません|ごめんなさい(?:ね)?|今|いま"
    r"|ちょっと|ちょと|だけ|少々|少し|一旦|いったん"
    # said first, the words of a goodbye only acknowledge: 「わかりました、少々お待ちください」
    r"|わかりました|分かりました|ありがとうございます|失礼しました|大丈夫です)*"
)
# Going to look something up or fetch it (「探すので待ってください」, 「待ってください、今
# 確認します」, 「通知書を持ってきますので」): the verb, then kana only to the end. Not 用意
# or 出す: 「お金を用意しますので待って」 asks for time to pay.
_LOOK = (
    r"(?:探(?=[しすさせ])|さが(?=[しす])|取(?=[っりるれら])|と(?=[っりる])|持(?=[っちつ])"
    r"|も(?=っ)|見(?=[てるま])|み(?=[てるま])|確認|調べ|しらべ|メモ|書(?=[かきくけい]))"
)
# Going to do it, not done (見ましたので) nor done to them (取られるから).
_GOING = (
    r"(?:す|く|る|ります|きます|します|ます|して(?:き|く)(?:ます|る)|っ?て(?:き|く)(?:ます|る))"
)
_OBJECT = (
    r"(?:今|いま|すぐ)?(?!(?:お金|現金|給料|年金|代金))"  # money fetched is time to pay
    r"(?:(?:[一-龥々ァ-ヶー]{1,8}の)?[一-龥々ァ-ヶー]{1,10}を)?"
)
# Handing the phone to someone at home: 「主人に代わりますので」.
_HAND_OVER = r"(?:[一-龥ぁ-んァ-ヶー]{1,8}(?:に|と))?(?:代わ|かわ|替わ)ります"
_BACK = r"(?:戻|もど)り?ます"
_FETCH = (
    r"(?:取って|とって|持って|もって|探して|さがして|見て|みて|確認して|調べて|しらべて)"
    r"(?:き|く|来)(?:ます|る)"
)
# Back on the line, or checking it: 「もしもし」, 「大変お待たせしました」, 「聞こえますか」.
_RETURN = (
    r"^(?:はい|あっ?|あの[うおー]?|えっと|ええと|すみません|すいません|ごめんなさい|大変|どうも)*"
    r"(?:もしもし|お待たせ(?:しました|いたしました|しております|しています"
    r"|して(?:すみません|申し訳ありません|しまって))?|(?:戻|もど)りました"
    r"|聞こえ(?:て(?:い)?)?ますか)+(?:ね|よ)?"
)
_RETURN_FIRST = re.compile(_RETURN)
# Said after the bot offered to wait or asked whether the caller is ready: still waiting.
_STILL_WAITING = re.compile(
    r"^(?:はい|ええ|あっ?|いや|いえ|いいえ|すみません|すいません|ごめんなさい(?:ね)?)*"
    r"(?:まだ(?:です|なんです|でして"
    r"|かかります)?)?(?:もう少し|もうちょっと|もう少々|しばらく)?(?:だけ)?"
    rf"(?:{_WAITS})?(?:ね)?$"
)
_PATTERNS: dict[ControlIntent, list[re.Pattern[str]]] = {
    ControlIntent.OPERATOR: [
        re.compile(r"オペレーター?"),
        re.compile(_PERSON + r"(?:さん)?(?:と|に|へ|の方に|から)(?:直接)?" + _TALK),
        re.compile(r"(?:直接|生の)(?:人|担当|職員)"),
        re.compile(r"(?:人|担当者?|職員)(?:に|へ)?(?:つない|繋い|代わっ|かわっ|回し|まわし)"),
        # 変わって is how a recogniser often writes 代わって; nobody asks to be "changed".
        re.compile(r"(?:つないで|繋いで|代わって|かわって|替わって|変わって)" + _PLEASE),
        # 「担当の方をお願いします」: how a call is asked to be put through; not a request
        # made before (「前に担当の方にお願いして…」, 「お願いした証明書」).
        re.compile(_STAFF + r"(?:さん)?(?:を|に)?(?:お願い|おねがい)(?!し(?:て|た(?!い)|まし))"),
        re.compile(r"機械(?:じゃなく|ではなく|は(?:いや|嫌))"),
    ],
    ControlIntent.REPEAT: [
        # 「もう一度」 asks to hear it again when it ends the utterance or goes with saying
        # or asking; 「もう一回送ってもらえますか」 is a request about something else.
        re.compile(
            r"(?:もう(?:一|1|いち|ひと)?(?:度|回|ど|かい|っかい|いっかい)|もういっかい|もういちど)"
            r"(?=$|だけ|言|い[いっうえ]|お?願|おねが|話|はな|聞|きか|説明|せつめい|読|よん"
            r"|頼|たの|くだ|下さ|です|ね|よ|か|ゆっ)"
        ),
        re.compile(r"聞き(?:取れ|とれ)(?:な|ませ|ず)"),
        re.compile(r"聞こえ(?:な|ませ|づら|にく)"),
        re.compile(r"繰り返し|くりかえし"),
        re.compile(r"(?:何|なん)て(?:言|い|おっしゃ)"),
        re.compile(r"ゆっくり(?:言|話|お願い)"),
    ],
    ControlIntent.HOLD: [
        re.compile(_BEFORE_WAIT + _WAITS + "$"),
        # the wait, then what the caller goes to do
        re.compile(
            _BEFORE_WAIT
            + _WAITS
            + _OBJECT
            + rf"(?:{_LOOK}[ぁ-ん]{{0,8}}|{_BACK}(?:ので|から)?ね?)$"
        ),
        # what the caller goes to do, then the wait
        re.compile(
            _BEFORE_WAIT
            + _OBJECT
            + rf"(?:{_LOOK}{_GOING}|{_HAND_OVER})(?:ので|から)(?:ちょっと|少々|少し)?"
            + rf"(?:{_WAITS})?$"
        ),
        re.compile(_BEFORE_WAIT + r"(?:すぐ|今|いま)?" + _BACK + r"(?:ので|から)ね?$"),
        # going to fetch it now (not another day: 「明日取ってきます」 ends the call)
        re.compile(
            r"^(?!.*(?:明日|あした|あさって|後で|あとで|今度|来週|週明け))"
            + _BEFORE_WAIT[1:]
            + _OBJECT
            + _FETCH
            + r"(?:ので|から)?ね?$"
        ),
    ],
    ControlIntent.RESUME: [
        re.compile(_RETURN + r"(?:ありました|見つかりました|ありがとうございます)?$")
    ],
    ControlIntent.GOODBYE: [
        re.compile(r"^以上(?:になります|で(?:す|ございます)?)?$"),  # 以上で: す unvoiced
        re.compile(r"ありがと(?:う|ー)?(?:ございま(?:す|した))?"),
        re.compile(r"(?:よく|よう)?(?:わか|分か|解)りました"),
        re.compile(
            r"(?:助かりました|解決しました|大丈夫です|結構です|けっこうです|もういいです"
            r"|それだけです)(?!か)"  # 「今から払っても大丈夫ですか」 is a question, not a goodbye
        ),
        re.compile(
            r"失礼(?:します|しました|いたします)|さようなら|ではまた|切ります|終わり(?:です|ます)?$"
        ),
        re.compile(r"(?:特に|とくに|ほかは|他は)(?:ない|ありません)|^ないです$|^ありません$"),
    ],
    ControlIntent.YES: [
        re.compile(
            r"^(?:はい|ええ|うん|そう|そうです|そうそう|それです|お願いします|おねがいします|合って(?:い)?ます|あって(?:い)?ます|その通り(?:です)?|はいそうです|はいお願いします|大丈夫です|それで(?:結構|けっこう|いい|よろしい)(?:です)?|よろしく(?:お願いします)?)+(?:ね|よ)?$"
        ),
    ],
    ControlIntent.NO: [
        re.compile(
            r"^(?:いいえ|いえ|いや|違います|ちがいます|違う|ちがう|違いますね|そうじゃない(?:です)?|そうではありません|じゃないです|ノー(?![ァ-ヺ]))+(?:よ|ね)?"
        ),
    ],
}
# Sound-key patterns for recognitions that spell the words wrongly.
_SOUND_PATTERNS: dict[ControlIntent, list[re.Pattern[str]]] = {
    ControlIntent.OPERATOR: [
        re.compile(r"オペレタ"),
        re.compile(r"タント(?:シャ|ノカタ|ノヒト)(?:サン)?(?:ト|ニ)"),
        re.compile(r"チョクセツ(?:ハナシ|バナシ|ソダン)"),
        re.compile(r"(?:ヒト|ショクイン)(?:ト|ニ)(?:ハナシ|カワ(?!リマス)|ツナ)"),
        # の方 reads ノホ; not a request made before (お願いして, お願いした)
        re.compile(
            r"タント(?:シャ|ノカタ|ノホ|ノヒト)?(?:サン)?オ?オネガイ(?!シ(?:テ|タ(?!イ)|マシ))"
        ),
        re.compile(r"キカイ(?:ジャナク|デワナク|デハナク)"),  # 機会じゃなくて for 機械
    ],
    ControlIntent.REPEAT: [
        re.compile(
            r"モ(?:イチド|イッカイ)(?=$|ダケ|イ[イッウエ]|オネガ|ネガ|ハナ|キカ|セツメ|ヨン|ヨミ"
            r"|タノ|クダ|デス|ネ|ヨ|カ|ユッ)"
        )
    ],
    ControlIntent.HOLD: [
        # 「住みません、ちょっと待ってください」: the words before the wait misspelt.
        re.compile(
            r"^(?:ハイ|エ|アッ?|イヤ|スミマセン|スイマセン|ゴメンナサイ|イマ|チョット|チョト"
            r"|ショショ|スコシ|イッタン)*(?:マッテテ?|マットッテ|マットイテ|オマチ)"
            r"(?:クダサイ(?:マセ)?|クレ(?!ン)|モラエ(?!ン)|イタダケ|チョウダイ|オ)?(?:マス)?(?:カ|デス)?"
            r"(?:ネ|ナ|ヨ)?$"
        )
    ],
    ControlIntent.RESUME: [
        re.compile(r"^(?:ハイ|ア|スミマセン|スイマセン)*(?:モシモシ|オマタセシマシタ)+$")
    ],
    ControlIntent.GOODBYE: [
        re.compile(r"^イジョ(?:デ(?:ス|ゴザイマス)?|ニナリマス)?$"),  # 異常で(す) for 以上です
        re.compile(r"アリガト(?:ゴザイマ(?:ス|シタ))?"),
        re.compile(r"シツレ(?:シマス|シマシタ|イタシマス)"),
    ],
}
# Yes, no, a hold and a 「もしもし」 are whole short replies (「はい、そうです、お願いします」
# is 13 characters; at 40 the worst run of overlapping alternatives of yes costs about a
# millisecond, at 52 65 ms).
_SHORT_REPLIES = (ControlIntent.YES, ControlIntent.NO, ControlIntent.HOLD, ControlIntent.RESUME)
MAX_REPLY_CHARS = 40
# Intents read with hesitations kept: 「もしもし」 is one, and is the whole of what is said.
_WITH_HESITATIONS = (ControlIntent.RESUME,)
# Checked in this order: a caller who asks for a person gets one even if they also thank us.
_ORDER = (
    ControlIntent.OPERATOR,
    ControlIntent.REPEAT,
    ControlIntent.HOLD,
    ControlIntent.RESUME,
    ControlIntent.NO,
    ControlIntent.YES,
    ControlIntent.GOODBYE,
)


def find_control(text: str, intents: tuple[ControlIntent, ...] = _ORDER) -> ControlMatch | None:
    """The first control intent (in priority order) whose phrase occurs in ``text``.

    Hesitations are left out (「あのー、担当の方を」), except for 「もしもし」 and the like,
    which are themselves the caller checking the line. Short replies (yes, no, a hold, a
    「もしもし」) are not tried on longer text: the overlapping alternatives of yes and no
    (そう / そうそう) would backtrack exponentially on a long run.
    """
    clauses = split_clauses(text)
    forms = {
        False: "".join(strip_fillers(c) for c in clauses),
        True: "".join(clauses),  # hesitations kept
    }
    keys: dict[str, str] = {}  # sound key of each form read (often both are the same text)
    for intent in intents:
        kept = intent in _WITH_HESITATIONS
        compact = forms[kept]
        if not compact or (intent in _SHORT_REPLIES and len(compact) > MAX_REPLY_CHARS):
            continue
        for pattern in _PATTERNS.get(intent, ()):
            m = pattern.search(compact)
            if m:
                residual = compact[: m.start()] + compact[m.end() :]
                return ControlMatch(intent, m.group(0), residual)
        for pattern in _SOUND_PATTERNS.get(intent, ()):
            if compact not in keys:
                keys[compact] = sound_key(compact)
            m = pattern.search(keys[compact])
            if m:
                return ControlMatch(intent, m.group(0), "")
    return None


def is_hold(text: str) -> bool:
    """Whether ``text`` asks the bot to wait (checked before a reply is read as a yes, a
    no or a choice: 「いや、ちょっと待って」, 「前の書類を探しますので」)."""
    found = find_control(nfkc(text), (ControlIntent.HOLD,))
    return found is not None


def after_return(text: str) -> str:
    """``text`` without 「お待たせしました」 or 「もしもし」 before it: what a caller who is
    back says to the question still open (「お待たせしました、はい、そうです」)."""
    compact = "".join(split_clauses(text))
    found = _RETURN_FIRST.match(compact) if len(compact) <= MAX_REPLY_CHARS else None
    return compact[found.end() :] if found and found.end() < len(compact) else text


def still_waiting(text: str) -> bool:
    """Whether ``text``, said when the bot has offered to wait or asked whether the caller
    is ready, says they need more time (「まだです」, 「もう少し」): asking for time is
    only a hold there."""
    compact = "".join(strip_fillers(c) for c in split_clauses(text))
    if not compact or len(compact) > MAX_REPLY_CHARS or not _STILL_WAITING.match(compact):
        return False
    return any(word in compact for word in ("まだ", "もう", "しばらく", "待", "まって"))


def yes_no(text: str) -> ControlIntent | None:
    """YES or NO for an answer to a confirmation question, else None."""
    found = find_control(nfkc(text), (ControlIntent.NO, ControlIntent.YES))
    return found.intent if found else None
