"""Question aspects: what kind of thing the caller wants to know.

Two questions about the same tax differ mostly in their question words: 「住民税は
いつまでに払うの」 asks for a deadline, 「住民税って何」 for an explanation. Character
n-grams see the shared tax name first; turning question words into explicit aspect
features (WHEN, WHERE, COST, ...) lets the scorer weigh the kind of question as
much as its subject, for any FAQ, without per-entry rules.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rapidfuzz.distance import Levenshtein

# 〜て forms that ask whether something has happened (入ってる, 落ちてます).
_DONE = "(?:できて|されて|入って|払えて|落ちて)"

# Where the tax office's mail should go (今の住所に送って, 息子の家へ届くように, 送り先):
# a change of address for notices, not a certificate asked for by post (証明書を家に
# 送って: dropped in ``aspects``), nor a notice that came (家に届いた), a filing (市の方に
# 届け出) or something sent before (申請書を先に送った: 先 only at the end of a word).
DESTINATION = re.compile(
    r"(?:住所|家|うち|ところ|とこ|(?<![ぁ-ん、])先|方)(?:に|へ)(?:送|届くよう|届けて)|"
    r"送り先|送付先|宛先|届け先|届く住所"
)
# A certificate that taxes were paid (納めてる証明, 滞納してないっていう証明), whatever
# few words come between: not the income certificate (収入の証明), nor a payer's
# statement (給与支払証明, 支払い証明: no verb of having paid).
PAID_PROOF = re.compile(r"(?:払っ|納め|納付し|納付済|滞納|未納)[^証]{0,8}証明")
# What a described certificate is not the tax-paid one for: an amount, an income or a
# dependant (住民税の額の証明, 所得の証明, 扶養の証明), another certificate named inside
# the description (納めてる市で課税証明), or, after a verb of paying, taxes not paid
# (払ってない証明 is the non-taxable one; 滞納してない is all paid).
_OTHER_PAPER = re.compile(r"額|いくら|所得|収入|課税|扶養")
_NOT_PAID = re.compile(r"な[いく]|なかっ")
# The tax before the paying (市税を, 固定資産税をちゃんと): rent or a fee paid proves nothing
# the city certifies.
_TAX_PAID = re.compile(r"税(?:金)?(?:を|は|も)?[^、。]{0,6}$")
# Taxes whose paid certificate another office issues (所得税, 法人税, 国の税金: the 税務署;
# 自動車税 and 不動産取得税: the prefecture), and a donation's receipt (ふるさと納税: the
# town given to): a city tax paid is what the city certifies.
_OTHER_OFFICE_PAID = re.compile(r"国の税|国税|税務署|法人税|ふるさと納税|寄付|寄附")
_OTHER_OFFICE_SUBJECTS = frozenset({"national", "car", "prefecture_tax", "customs"})
# The hometown donation's special exception described by what it spares the donor (確定申告
# しなくて済む特例, 確定申告が要らない特例): the one-stop exception by its name, when a
# donation is spoken of (other filings are spared by other exceptions: 医療費控除, 給与).
_DONATION = re.compile(r"ふるさと|寄付|寄附|返礼品|ワンストップ")
ONE_STOP_DESCRIBED = re.compile(
    r"確定申告(?:を|が|は)?(?:しなくて|しないで|せずに|せんで|なしで|不要|いらな|要らな|"
    r"必要な[いく])[^、。特]{0,8}特例"
)


def named_outright(surface: str) -> str:
    """The (normalised) text with what a caller describes named as the tax office names
    it, so that it is matched as if the caller had said the name: a certificate described
    by the paying of a city tax (市税を払ってる証明, 滞納してないっていう証明) as 納税証明;
    the special exception that spares a donor the filing (``ONE_STOP_DESCRIBED``) as
    ワンストップ特例; a tax paid twice and regretted (``DOUBLE_PAID``) as 二重に払ってしま;
    a tax notice lost (``LOST_NOTICE``) as its slips lost; a notice's arrival asked with
    来る (``ARRIVAL_ASKED``) as いつ届く.
    (会社の住民税 is not named 法人の住民税: employees, their families and sole traders say
    it of their own tax, whatever the company's affairs around it.)"""

    def paid_proof(m: re.Match[str]) -> str:
        said = m.group()
        arrears = said.startswith(("滞納", "未納"))
        if (
            _OTHER_PAPER.search(said)
            or (not arrears and _NOT_PAID.search(said))
            or _OTHER_OFFICE_PAID.search(surface, 0, m.start())
            or _OTHER_OFFICE_SUBJECTS.intersection(subjects(surface[: m.start()]))
        ):
            return said
        if arrears or _TAX_PAID.search(surface, 0, m.start()):
            return "納税証明"
        return said

    surface = PAID_PROOF.sub(paid_proof, surface)
    if _DONATION.search(surface):
        surface = ONE_STOP_DESCRIBED.sub("ワンストップ特例", surface)
    return _arrival_named(_lost_notice_named(_paid_twice_named(surface)))


def _paid_twice_named(surface: str) -> str:
    twice = DOUBLE_PAID.search(surface)
    if (
        twice is None
        or _AFTER_DOUBLE_PAID.search(surface, twice.end())
        or _OTHER_OFFICE_SUBJECTS.intersection(subjects(surface))
    ):
        return surface
    return surface[: twice.start()] + "二重に払ってしま" + surface[twice.end() :]


def _lost_notice_named(surface: str) -> str:
    lost = LOST_NOTICE.search(surface)
    if lost is None or _AFTER_LOST_NOTICE.search(surface, lost.end()):
        return surface
    return surface[: lost.start()] + "納付書を" + lost.group("lost") + surface[lost.end() :]


def _arrival_named(surface: str) -> str:
    if _NOT_A_NOTICE.search(surface):
        return surface
    return ARRIVAL_ASKED.sub(r"\g<mail>いつ届く", surface)


# The same tax paid twice, regretted (窓口と口座の両方で納めてしまった, 引き落とされてたのに
# 窓口でも払っちゃった, 同じ納付書を別々に払ってしまった): said as the FAQ says it,
# 二重に払ってしま; 両方 only beside a way of paying (両親の分を両方 is two taxes), not
# 二回目 nor 二度と. Not a question whether both ways may be used (両方で払っていいですか:
# no regret), nor whether one may still pay after a reminder (督促状が来たのに、コンビニで
# も払っちゃって大丈夫).
DOUBLE_PAID = re.compile(
    r"(?:(?:口座|引き?落と|窓口|コンビニ|銀行|郵便局|スマホ|カード|ペイ)[^。]{0,12}?両方|"
    r"同じ[^。]{0,10}?別々に|[二2](?:回(?![にの目])|度(?!と))|"
    r"(?:落ち|払っ|納め|引き?落とさ?れ)[^。]{0,8}?のに[^。]{0,24}?でも)[^。]{0,12}?"
    r"(?:払|納め|納付し)っ?"
    r"(?:(?:てしまっ|ちゃっ|ちまっ)(?:た|て(?!も|大丈夫|いい|よい|ええ|構わ))|てしまい(?!ても)|"
    r"てもうた|しもうた|しもた)"
)
# ... unless the caller asks about something else after it (the slips sent together, the
# next due date, a certificate, paying them as one)
_AFTER_DOUBLE_PAID = re.compile(r"まとめ|一緒|期限|納期|いつ|証明|送って|送り|捨て|一枚")
# A tax notice lost (通知書をなくした): its payment slips lost, as 納付書をなくし says; not a
# refund's, a seizure's or the tax decision's notice, nor when the caller asks after it
# for an amount, a due date or a certificate
LOST_NOTICE = re.compile(
    r"(?<!還付の)(?<!還付)(?<!差押えの)(?<!差押の)(?<!差押え)(?<!差押)(?<!決定)(?<!税額)"
    r"(?:納税)?通知書を(?P<lost>なくし|無くし|失くし|紛失|捨て)"
)
_AFTER_LOST_NOTICE = re.compile(r"いくら|額|納期|期限|いつ|証明|所得")


# When a notice comes, asked with 来る (お知らせって何月ぐらいに来る, 通知はいつ頃来ます): said
# as the FAQ says it, いつ届く; only with the notice a few words before and nothing of a
# person, money or another section's mail in the question (職員さんはいつ来ますか,
# 還付金はいつ来ますか, 年金の通知はいつ来ますか are not a tax notice's timing).
ARRIVAL_ASKED = re.compile(
    r"(?P<mail>(?:通知|知らせ|封筒|明細|納付書|紙)[^。]{0,10}?)"
    r"(?:いつ|何月)(?:ごろ|頃|くらい|ぐらい)?(?:に)?(?:来る|来ます|来ん|くる|きます|来てる|来$)"
)
_NOT_A_NOTICE = re.compile(
    r"職員|市の人|係の人|担当|人が|お金|振込|振り込|還付|差し?押|年金|保険|水道|マイナンバー|"
    r"証明|返礼品|給付"
)


# A payment made, asked whether the city has it (納付がそちらで反映されているか, 払った
# のに入金されてますか): the caller's own account, which staff look up whatever the tax.
# Not a donation's credit, a refund or a certificate the payment should have made
# possible (ふるさと納税で払った分の反映, 還付金の入金, 払ったのに証明が出ない): their
# entries answer that.
PAID_RECEIVED_OTHER = re.compile(r"ふるさと|寄付|寄附|還付|返金|返って|戻って|証明")
PAID_RECEIVED = re.compile(
    r"(?:納付|入金|払っ|払い込ん|納め|振り?込ん)[^、。]{0,12}?"
    r"(?:反映|入金され|入って(?:い)?(?:る|ます)|届いて(?:い)?(?:る|ます)|確認(?:でき|とれ|取れ|して|を))"
)


# Words of a certificate or of asking for papers by post (郵送で家に送って, 課税の書類,
# 申請書, 車検用のを家に送って): mail to an address is then a certificate's.
CERTIFICATE_REQUEST = re.compile(r"証明|郵送|郵便で|請求|申請|課税|車検")


ASPECT_PATTERNS: dict[str, re.Pattern[str]] = {
    "when": re.compile(
        r"いつ|何月|なんがつ|何日|なんにち|期限|締め?切り?|しめきり|納期|時期|ごろ|頃|何時|なんじ|"
        r"まで(?:に|の)|から(?:いつ|何)"
    ),
    "count": re.compile(r"何回|なんかい|何期|回数|何枚|年\d回|分けて"),
    "cost": re.compile(
        r"いくら|なんぼ|何ぼ|料金|手数料|値段|費用|無料|有料|ただで|タダ|円|お金(?:が|は|って)?(?:かか|い[りる]|要[りる]|必要)"
    ),
    "where": re.compile(r"どこ|場所|何階|なんかい|窓口|どちらに|どの(?:市|役所|窓口)"),
    "how": re.compile(
        r"どうやって|どうすれば|どうしたら|どうやったら|方法|手続き?|やり方|仕方|"
        r"何が(?:必要|いる)|何を持って|必要なもの|申し?込み?|申請|届け?出|"
        r"(?:払い|納め|取り|書き|使い|出し|読み|申し込み)方|見方"
    ),
    "why": re.compile(r"なぜ|なんで|どうして|理由|おかしい|合わない"),
    "who": re.compile(r"誰|だれ|どなた|どちらの市"),
    "what": re.compile(r"とは|って何|ってなに|どういう|どんな|何ですか|なんですか|仕組み|しくみ"),
    "can": re.compile(r"でき|出来|可能|使え|もらえ|取れ|とれ|払え|大丈夫"),
    "check": re.compile(  # 届いてるの / 届いてますか (normalised: a closing 〜て, 届いて)
        rf"確認|{_DONE}(?:い)?(?:る|ます|たか)|反映|済んで|引き落とされ|"
        r"届いて(?:い)?(?:る|ます)(?:か|の)|"
        rf"(?:{_DONE}|届いて)$"
    ),
    # whether a tax applies at all (住民税がかからない人, 払わなくていい): the threshold of
    # exemption, not what the tax is (かかりません is normalised to かかりない); a phone
    # call that does not go through (電話がかからない) is another かかる
    "exempt": re.compile(
        r"(?<!電話が)(?<!電話)かから(?:ない|ず|ん)|かかりませ|かかりな[いく]|非課税|課税されない|"
        r"(?:払|納め)わ?なくて(?:いい|よい|も)"
    ),
    "paid_proof": PAID_PROOF,
    # paying with a phone (スマホで住民税を払える): the phone named before the paying, a few
    # words apart; a phone named for anything else (スマホが壊れて, スマホで申告) is not
    "by_phone": re.compile(r"(?:スマホ|スマートフォン)[^証]{0,8}(?:払|納め|納付[しで])"),
    "destination": DESTINATION,
    # the caller cannot pay as due (払うのが難しい, 余裕がない, 収入が減って): a case for staff,
    # whatever the tax or the reason
    "hardship": re.compile(
        r"払えな|払えそうにな|払うの[がは](?:難し|しんど|無理|厳し|きつ)|支払[いう].{0,5}(?:難し|厳し|無理)|"
        r"(?:お金|生活|支払|払う)の?余裕が?な|お金がな|生活が(?:苦し|厳し)|収入が(?:減|な|途絶)|手が回らな|精一杯|精いっぱい"
    ),
    "mine": re.compile(r"私の|わたしの|うちの|自分の|我が家|主人の|夫の|妻の|母の|父の|親の"),
}


# The tax a question is about. In a tax FAQ this is the main axis besides the kind of
# question, and it decides the office (所得税 goes to the tax office, not the city).
# Words are matched on the surface and, by sound, on the sound key (for kana or
# wrong-kanji recognitions); a subject's ``_MASKS`` are removed before its words are
# looked for (法人住民税 is not 住民税, 軽自動車税 is not 自動車税, but it is 軽自動車).
SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "juminzei": ("住民税",),
    "kotei": ("固定資産税", "都市計画税", "家屋", "土地"),
    "keiji": ("軽自動車", "原付", "バイク", "軽の車", "軽の自動車", "軽乗用車", "軽の乗用車"),
    "national": ("所得税", "確定申告", "相続税", "贈与税", "消費税", "税務署", "国税"),
    "car": ("自動車税", "普通車", "普通自動車", "乗用車"),
    "insurance": ("国民健康保険", "介護保険", "後期高齢", "年金事務所"),
    "corporate": ("法人", "会社を設立", "会社を作", "事業年度"),
    # city taxes the FAQ does not cover (paid by businesses): naming one sets back
    # entries about the others
    "other_city_tax": ("たばこ税", "入湯税", "宿泊税", "事業所税", "鉱産税"),
    # the prefecture's taxes besides the car tax: no entry of the city's applies
    "prefecture_tax": ("不動産取得税", "ゴルフ場利用税", "軽油引取税"),
    # the customs' duty on goods from abroad: neither the city's nor the tax office's
    "customs": ("関税",),
}
# Taxes no entry covers: the businesses that collect or declare the city's own (入湯税,
# たばこ税) file them on their own forms, and the prefecture collects its others. Named
# alone, they set back even the entries of no tax (納付方法, 口座振替, 災害の減免), whose
# answers are for the notices residents pay; not the counter's, nor, for the city's own,
# the certificates' (``Matcher``).
UNCOVERED_TAXES = frozenset({"other_city_tax", "prefecture_tax", "customs"})
# ... of which the city certifies none paid
UNCERTIFIED_TAXES = frozenset({"prefecture_tax", "customs"})
_MASKS: dict[str, tuple[str, ...]] = {
    "juminzei": ("法人住民税", "法人の住民税"),
    "car": ("軽自動車税", "軽の自動車税", "軽乗用車", "軽の乗用車"),
    "customs": ("機関税",),  # 金融機関税金
}
# A subject word whose sound key is at least this long also counts when the text holds
# it with one sound wrong inside it (古典産税, コテンサンゼ, for 固定資産税, コテシサンゼ):
# the recogniser garbles the long tax names most, and one edit in six or more sounds
# rarely turns one tax name into another. Only when no subject is named outright, and
# only when one subject is that near.
FUZZY_SUBJECT_MIN_LEN = 6


@lru_cache(maxsize=1)
def _subject_keys() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    from faq.reading import sound_key

    keys = {name: tuple(sound_key(w) for w in words) for name, words in SUBJECT_WORDS.items()}
    masks = {name: tuple(sound_key(m) for m in words) for name, words in _MASKS.items()}
    return keys, masks


def _masked(text: str, masks: tuple[str, ...]) -> str:
    for mask in masks:
        text = text.replace(mask, "|")
    return text


def _within_one_edit(word: str, text: str) -> bool:
    """Whether some span of ``text`` is ``word`` with one sound inside it substituted,
    inserted or deleted. The first and last sounds must agree: an edit at the edge is
    another word (所得, ショトク, is not 所得税, ショトクゼ)."""
    n = len(word)
    i = text.find(word[0])
    while i >= 0:
        for size in (n - 1, n, n + 1):
            span = text[i : i + size]
            if (
                len(span) == size
                and span[-1] == word[-1]
                and Levenshtein.distance(word, span, score_cutoff=1) <= 1
            ):
                return True
        i = text.find(word[0], i + 1)
    return False


def subjects(surface: str, key: str = "") -> list[str]:
    """Tax subjects named in the text (by spelling or by sound, long names allowing one
    wrong sound)."""
    word_keys, mask_keys = _subject_keys()
    found = []
    sounds = {name: _masked(key, mask_keys.get(name, ())) for name in SUBJECT_WORDS}
    for name, words in SUBJECT_WORDS.items():
        text = _masked(surface, _MASKS.get(name, ()))
        if any(w in text for w in words) or (
            key and any(k in sounds[name] for k in word_keys[name])
        ):
            found.append(name)
    if key and not found:  # by approximate sound only when no subject is named outright
        near = [
            name
            for name, keys in word_keys.items()
            if any(
                len(k) >= FUZZY_SUBJECT_MIN_LEN and _within_one_edit(k, sounds[name]) for k in keys
            )
        ]
        if len(near) == 1:  # 自動車税 is one edit from 軽自動車: ambiguity names nothing
            found = near
    return found


# Procedures callers name beside a city tax (the tax office's 確定申告 feeds the residence
# tax): they are subject words of the national taxes, but naming one is not asking about
# another tax than the residence tax.
PROCEDURES = ("確定申告", "税務署")


def taxes_named(surface: str) -> frozenset[str]:
    """The taxes the text names outright, by spelling (a tax heard only by a near sound
    denies no other tax), procedures left out."""
    for word in PROCEDURES:
        surface = surface.replace(word, "|")
    return frozenset(subjects(surface))


# The certificate a question is about, where it names one: the tax office's twin of the
# subject. 納税証明書 (taxes paid) and 所得証明書 / 課税証明書 (income, and the tax it
# bears) are asked for in the same words (コンビニで出せますか, 郵送で取れますか) and differ
# in one character, so the words around the name must not carry a question to the other.
# Spelled words only (after synonyms): a certificate heard by sound names nothing.
CERTIFICATE_WORDS: dict[str, tuple[str, ...]] = {
    "paid": ("納税証明", "完納証明"),
    "income": ("所得証明", "課税証明", "収入証明"),
}


def certificates_named(surface: str) -> frozenset[str]:
    """The kinds of certificate the text names outright (``CERTIFICATE_WORDS``)."""
    return frozenset(
        name for name, words in CERTIFICATE_WORDS.items() if any(w in surface for w in words)
    )


_CERTIFICATE_TITLE = re.compile(
    "(?:" + "|".join(w for words in CERTIFICATE_WORDS.values() for w in words) + ")書?|や|と|の"
)


def certificate_entry(title: str) -> frozenset[str]:
    """The kinds of certificate an entry is about: those its (normalised) title names, when
    the title is nothing else (納税証明書; 所得証明書や課税証明書). A title that says more
    (車検用の納税証明書) is about that use, which a caller may ask about naming another
    certificate (車検に所得証明書は使えますか)."""
    return certificates_named(title) if not _CERTIFICATE_TITLE.sub("", title) else frozenset()


# Charges callers pay that are not city taxes: the water works, utilities, nursery fees and
# the like. A question about paying one of them shares every word with a tax payment
# question but its subject (水道料金をコンビニで, 保育料の口座振替), and the tax line has
# no answer for it. Compiled from what a city collects besides its taxes, not from any
# caller's words. 代 of 代わる, 代わり and 代表 is no charge (電話代わって asks for someone).
_FEE = r"(?:料金|料|代(?![わり表])|使用料|費)"
OTHER_CHARGES = re.compile(
    rf"(?:上下水道|下水道|水道|ガス|電気|電話|携帯|給食|駐車場?|駐輪場?){_FEE}|"
    r"保育料|保育園の(?:料金|費用)|受信料|nhk|家賃|粗大ごみ|"
    # a utility's own bill, fee or payment: 水道の支払い, 電気の納付書, 下水道の使用料
    r"(?:上下水道|下水道|水道|ガス|電気)の(?=支払|払|納付書|請求|引き?落と|口座振替|使用料|料金)"
)
PAYING = re.compile(r"払|納|決済|振替|振り替え|引き?落と|督促|滞納")
# Words of the tax line's own business: a text with one of them is a tax question that
# mentions another charge (保育料の支払いに所得証明書が要る, 還付金は電気代の口座に).
TAX_MATTERS = re.compile(r"証明|還付|納税|申告|課税|控除|扶養|経費|所得|猶予|延滞")
# The caller cannot pay: another charge named beside it is the reason, and what cannot be
# paid is their tax (「家賃を払うのが精一杯で、払えないんですが」) — a question for staff.
HARDSHIP = re.compile(
    r"払えな|払えそう|払えません|払えて(?:い)?な|分割|分納|少しずつ|待って|差し?押|精一杯|精いっぱい"
    r"|苦し|厳し|難し|余裕|間に合|延ば|お金がな|生活費"
)
# Right after the charge: named as a comparison (「水道料金みたいに口座振替に」) or as income
# (家賃収入), not as what is paid.
NOT_PAID = re.compile(r"みたい|みたく|のよう|と同じ|と一緒|収入|所得")


# Places a city runs besides its tax office (and a few others callers ask the city about),
# compiled from a city's list of facilities, not from any caller's words: a question about
# their hours or where they are shares every word with the tax office's (何時まで開いて,
# どこにありますか) but has no answer on this line. Not the post office or the city's own
# offices, where taxes are paid and certificates asked for.
OTHER_FACILITIES = (
    r"図書館|公民館|体育館|プール|美術館|博物館|動物園|植物園|水族館|児童館|市民会館|"
    r"文化会館|病院|保健所|保健センター|清掃工場|クリーンセンター|斎場|火葬場|霊園|墓地|納骨堂|"
    r"保育園|幼稚園|小学校|中学校|高校|スポーツセンター|運動公園|公園|銀行|ハローワーク|"
    r"パスポートセンター|コミュニティセンター"
)
# Facilities whose use is applied for (a grave, a hall, a nursery place): not a hospital or
# a bank, where a caller may be while applying for something of the tax line's.
FACILITIES_FOR_USE = (
    r"墓地|納骨堂|霊園|斎場|火葬場|公民館|体育館|プール|市民会館|文化会館|"
    r"コミュニティセンター|スポーツセンター|運動公園|公園|図書館|保育園|幼稚園|児童館"
)
# The facility as the subject of the question, its hours or place asked a few words on
# (図書館って何時まで開いて, 公民館は日曜日休み), or its use applied for (墓地に納骨したいが
# 申し込みは), not a facility named on the way (病院の帰りに寄りたいが窓口は何時まで).
ASKS_FACILITY = re.compile(
    rf"(?:{OTHER_FACILITIES})(?:って|は|の|に)?.{{0,8}}?"
    r"(?:何時|開いて|開い?と|開館|閉館|休館|休み|閉ま|場所|どこ|行き方|やって(?:い|る|ま|$))|"
    rf"(?:{FACILITIES_FOR_USE})(?:って|は|の|に)?.{{0,12}}?(?:申し?込|使用許可|予約)"
)
# Words of the tax office's own business or of its mail: with one of them, the facility is
# context (郵便局で納付書は何時まで払える, 保育園に出す書類はどこで, 公園の近くの土地).
TAX_OFFICE_MATTERS = re.compile(
    r"窓口|市役所|役所|支所|納付|納め|払|通知|督促|口座|引き?落|書類|手続|届|土地|家|収入|年収|"
    r"取り壊|相続|証明|送り先|申告"
)


def asks_other_facility(surface: str) -> bool:
    """Whether the text asks when another facility is open, or where it is (``ASKS_FACILITY``),
    and nothing of taxes (税, ``TAX_MATTERS``, ``TAX_OFFICE_MATTERS``) or of the caller's
    hardship (病院に入院して払えない) is in the text."""
    if not ASKS_FACILITY.search(surface) or "税" in surface:
        return False
    return not (
        TAX_MATTERS.search(surface)
        or TAX_OFFICE_MATTERS.search(surface)
        or HARDSHIP.search(surface)
    )


# Papers the city's other sections issue (the residents' register, family registers, seal
# registration), compiled from a city's list of services, not from any caller's words.
# Asked for in the tax line's own words (郵送で取りたい, 代理で取れる, コンビニで取れる),
# they have no answer on this line; named on the way (住民票を移したので, 戸籍上の妻) they
# are context.
OTHER_PAPERS = (
    r"住民票|戸籍|除籍|登記簿|謄本|抄本|印鑑登録証明書?|印鑑証明書?|附票|"
    r"犬.{0,12}?登録|鑑札|狂犬病"
)
ASKS_PAPER = re.compile(
    rf"(?:{OTHER_PAPERS})(?:の写し)?(?:って|は|を|が|も)?.{{0,8}}?"
    r"(?:取れ|取り|取る|とれ|とり|もらえ|もらい|欲しい|ほしい|発行|交付|請求|郵送|出し方|"
    r"いくら|手数料|どこで)"
)
# A filing at another counter asked about outright (how or where to hand it in), not a
# move dated by it (転入届を出したばかりで、今年の分は).
ASKS_FILING = re.compile(
    r"(?:転入届|転出届|転居届|婚姻届|出生届)(?:の手続き|の届け?出)?(?:って|は|を)?.{0,4}?"
    r"(?:出したい|出し方|出すには|何を持|何持|どこに出|どこで出|どこへ出|どこの窓口|窓口は)"
)
# Words of the tax line's own business beside such a paper: then the paper is context
# (住民票を移したので送り先を, 戸籍を集めて名義を, 住民票と納税証明を一緒に).
TAX_PAPER_MATTERS = re.compile(
    r"納付|納め|払|通知|督促|口座|引き?落|申告|相続|名義|持ち主|亡くな|土地|家屋|評価|減免|"
    r"還付|控除|扶養|所得|課税|納税|延滞|猶予|差し?押|滞納|送り先|送付先|移し|移さ|郵便|"
    r"(?<!印鑑)(?<!登録)証明"
)
# A benefit (給付金 for households the residence tax spares, 児童手当) asked about as such:
# its application, payment, deadline or notice, with no tax matter after it (給付金は
# 所得になりますか, 給付金の対象になる非課税世帯とは are tax questions).
ASKS_BENEFIT = re.compile(
    r"(?:児童手当|給付金|支援金)(?:って|は|の|を|が)?.{0,6}?"
    r"(?:申請|振り?込|締め?切|いつ|もらえ|受け取|通知|来て|届)"
)
BENEFIT_TAX_MATTERS = re.compile(r"非課税|課税|申告|所得|扶養|差し?押|証明|税")
# The gift a hometown donation brings (返礼品) is the donation section's business when the
# gift itself is asked about (not come, what there is, its choice or delivery); the tax
# credit the donation earns is the tax line's.
ASKS_RETURN_GIFT = re.compile(
    r"返礼品.{0,10}?(?:届か|届いて(?:い)?な|届きな|届きませ|来な|来て(?:い)?な|選|変更|キャンセル|"
    r"何があ|何がもらえ|種類|発送|交換)"
)
RETURN_GIFT_TAX_MATTERS = re.compile(
    r"寄付金|寄附金|受領|通知書|控除|申告|ワンストップ|特例|上限|限度|所得|還付|安く|減|増え|"
    r"得|損|年末調整"
)


def asks_other_document(surface: str, key: str = "") -> bool:
    """Whether the text asks for a paper of another section (``ASKS_PAPER``), how to file
    there (``ASKS_FILING``), about a benefit (``ASKS_BENEFIT``) or a hometown donation's
    gift (``ASKS_RETURN_GIFT``, with no tax credit named), and not about a tax.

    A paper or a filing: nothing names a tax (税, by spelling or by sound as ``subjects``
    finds it), a tax certificate (``CERTIFICATE_WORDS``) or the tax line's business
    (``TAX_PAPER_MATTERS``). A benefit: nothing of taxes after it (``BENEFIT_TAX_MATTERS``);
    what came before may be who receives it (住民税非課税世帯向けの給付金の申請)."""
    if certificates_named(surface):
        return False
    benefit = ASKS_BENEFIT.search(surface)
    if benefit is not None:
        return not BENEFIT_TAX_MATTERS.search(surface, benefit.start())
    if ASKS_RETURN_GIFT.search(surface):
        donation_aside = surface.replace("ふるさと納税", "")
        return "税" not in donation_aside and not RETURN_GIFT_TAX_MATTERS.search(surface)
    if not (ASKS_PAPER.search(surface) or ASKS_FILING.search(surface)):
        return False
    if "税" in surface or TAX_PAPER_MATTERS.search(surface):
        return False
    return not subjects(surface, key)


# Someone else's land or empty house neglected (its weeds, branches, rubbish): a matter for
# the city's section for empty houses or the environment, whatever tax its owner pays. The
# tax office does not tell callers who owns it nor asks owners to tidy up.
NEIGHBOURS_PROPERTY = re.compile(
    r"(?:隣|となり|近所|向かい|裏)の(?:空き家|家|土地|空き地|畑|田んぼ|建物)"
)
# the neglect a few words on (隣の空き家の草が); not damage it did (倒れてきて) nor a person
# who fell ill (隣の家の人が倒れて)
NEGLECT = re.compile(
    r"^.{0,12}?(?:草|雑草|枝|伸び放題|荒れ|放置|ごみ|ゴミ|(?<!人が)倒れ(?!て[きく])|"
    r"崩れ(?!て[きく])|傾い|害虫|悪臭|ネズミ|野良)"
)
# The caller's own land or house, damage done to it, or its tax: the neighbour is context.
OWN_PROPERTY = re.compile(
    r"買|相続|うちの|私の|わたしの|自分の|うちも|私も|もうち|も私|減免|壊れ|被害|焼け|"
    r"安く|評価|高い|払いに|代わり"
)


def complains_of_neighbours_property(surface: str) -> bool:
    """Whether the text complains of a neighbour's neglected land or house
    (``NEIGHBOURS_PROPERTY``, then ``NEGLECT``), with nothing of the caller's own
    property, its damage or its tax (``OWN_PROPERTY``)."""
    place = NEIGHBOURS_PROPERTY.search(surface)
    if place is None or not NEGLECT.search(surface[place.end() :]):
        return False
    return not OWN_PROPERTY.search(surface)


def pays_other_charge(surface: str, key: str = "") -> bool:
    """Whether the text asks about paying a charge that is not a tax.

    Only a question whose subject is the charge: it is named before the words of paying
    (「水道料金をコンビニで払いたい」, not 「ペイペイで払えますか、水道代もペイペイなので」
    nor 「口座振替の申し込み…水道料金と同じ口座で」), and nothing names a tax or the tax
    line's own business (税, a tax by spelling or by sound as ``subjects`` finds it,
    ``TAX_MATTERS``), of the caller's hardship (``HARDSHIP``), or makes the charge a
    comparison or an income (``NOT_PAID``)."""
    charge = OTHER_CHARGES.search(surface)
    if charge is None or "税" in surface or TAX_MATTERS.search(surface):
        return False
    if HARDSHIP.search(surface) or NOT_PAID.match(surface, charge.end()):
        return False
    paying = PAYING.search(surface)
    return paying is not None and charge.start() < paying.start() and not subjects(surface, key)


def aspects(text: str, key: str = "") -> list[str]:
    """Aspect and subject names present in (normalised) ``text``, each once."""
    found = [name for name, pattern in ASPECT_PATTERNS.items() if pattern.search(text)]
    if "destination" in found and "証明" in text:
        found.remove("destination")  # a certificate sent home is asked for by post
    found += ["tax:" + name for name in subjects(text, key)]
    return found
