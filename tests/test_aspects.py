"""Question aspects and tax subjects (``faq.aspects``): the features that tell two
questions about different taxes apart when their phrasing is the same."""

from __future__ import annotations

import pytest

from faq.aspects import (
    asks_other_document,
    asks_other_facility,
    aspects,
    certificates_named,
    complains_of_neighbours_property,
    named_outright,
    pays_other_charge,
    subjects,
    taxes_named,
)
from faq.normalize import normalize
from faq.reading import sound_key


def named(text: str) -> list[str]:
    surface = normalize(text)
    return subjects(surface, sound_key(surface))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("軽自動車税のしくみを教えて", ["keiji"]),  # not 自動車税 (the prefecture's)
        ("自動車税はどこに払うの", ["car"]),
        ("法人住民税の申告", ["corporate"]),  # not the personal 住民税
        ("法人の住民税の均等割", ["corporate"]),
        ("住民税の納期はいつですか", ["juminzei"]),
        ("固定資産税と都市計画税", ["kotei"]),
    ],
)
def test_subjects_named_outright(text, expected):
    assert named(text) == expected


@pytest.mark.parametrize(
    "heard, expected",
    [
        ("古典産税は年に何回払うんでしょうか", ["kotei"]),  # コテンサンゼ for コテシサンゼ
        ("固定産税の手続きはどうすれば", ["kotei"]),  # one sound dropped inside
        ("所得証明書がほしいんですが", []),  # 所得 is not 所得税: the edit would be at the edge
        ("年金の受け取りの手続き", []),
    ],
)
def test_long_tax_names_with_one_wrong_sound_inside(heard, expected):
    assert named(heard) == expected


def test_a_subject_named_outright_is_not_joined_by_near_ones():
    assert named("住民税と古典産税のこと") == ["juminzei"]


def test_subject_is_an_aspect_feature():
    surface = normalize("古典産税の納期はいつ")
    found = aspects(surface, sound_key(surface))
    assert "tax:kotei" in found and "when" in found


@pytest.mark.parametrize(
    "text",
    ["お金かかりますか", "お金はいりますか", "有料ですか", "タダでもらえますか", "何円ですか"],
)
def test_asking_about_money_is_the_cost_aspect(text):
    assert "cost" in aspects(normalize(text))


@pytest.mark.parametrize(
    ("text", "exempt"),
    [
        ("パートの妻には住民税はかからないんですか", True),
        ("年金だけなら住民税はかかりませんよね", True),
        ("学生のうちは税金を納めなくていいの", True),
        ("非課税世帯かどうか知りたい", True),
        ("住民税はどういう人にかかるんですか", False),  # what the tax is, not exemption
        ("固定資産税はいつ払えばいいですか", False),
        ("電話がかからないんですが", False),  # the call does not go through
    ],
)
def test_asking_whether_a_tax_applies_at_all_is_the_exempt_aspect(text, exempt):
    assert ("exempt" in aspects(normalize(text))) is exempt


def test_a_procedure_names_no_tax_of_its_own():
    assert taxes_named(normalize("確定申告をしたら住民税の通知は")) == {"juminzei"}
    assert taxes_named(normalize("税務署で確定申告します")) == frozenset()
    assert taxes_named(normalize("所得税の申告")) == {"national"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ガス代を口座振替にしたいんですが", True),
        ("保育料の納付書をなくしてしまって", True),
        ("電気料金はコンビニで払えますか", True),
        ("下水道使用料の引き落としの日はいつ", True),
        # naming a tax makes it a tax question, whatever else is named
        ("上下水道料金と固定資産税をまとめて払いたい", False),
        # a charge named without paying it: a certificate for the nursery is a tax matter
        ("保育料の手続きに所得の証明が要るんですが", False),
        ("コンビニで払えますか", False),
        ("給食代の引き落とし口座を変えたい", True),
        ("市営住宅の家賃をコンビニで払いたい", True),
        ("水道の支払いをコンビニでしたい", True),
        ("電気の納付書をなくしました", True),
        # a tax question that mentions another charge on the way
        ("ペイペイで払えますか、ガス代もペイペイなので", False),
        ("口座振替を申し込みたい、電気代と同じ口座で", False),
        ("軽自動車の納付書、ガス代と一緒に払えますか", False),  # a tax by its subject
        ("じゅうみんぜいをガス代と同じ口座から引き落としたい", False),  # by its sound
        ("還付金は電気代の口座に振り込まれますか", False),
        ("納付書のことで電話代表にかけたら", False),
        # 電話代わって hands the phone over: a request for someone, not a telephone bill
        ("支払いのことで電話代わってもらえますか", False),
        ("下水道の使用料を口座から引き落としにしたい", True),
        # the charge is why the caller cannot pay their tax: a question for staff
        ("家賃の支払いで手一杯で、払えそうにないんです", False),
        ("給食費も払ってるので、分けて払う分納はできますか", False),
        ("電気代も滞っていて、差し押さえされるんでしょうか", False),
        # the charge as a comparison or as income
        ("ガス代みたいにクレジットカードで払えますか", False),
        ("駐車場代と同じようにコンビニで払いたい", False),
        ("家賃収入がありますが、納付書は届きますか", False),
        ("給食費を払うと余裕がなくて、少しずつでもいいですか", False),
        ("ガス代を滞納していて差し押さえが心配です", False),  # 差押え once normalised
        ("保育料を払っていますが、控除の対象になりますか", False),
    ],
)
def test_paying_a_charge_that_is_not_a_tax(text, expected):
    surface = normalize(text)
    assert pays_other_charge(surface, sound_key(surface)) is expected


@pytest.mark.parametrize(
    ("text", "destination"),
    [
        ("税金の書類を実家の住所に送ってもらえますか", True),
        ("納税通知書を娘の家へ届くようにしたい", True),
        ("郵便の送り先を変えたいんです", True),
        ("証明書を郵送で送ってもらえますか", False),  # a certificate by post
        ("証明書を家に送ってもらえますか", False),
        ("納付書はいつ届きますか", False),
        ("父あての通知が家に届いたんですが", False),  # a notice that came
        ("市の方に届け出は要りますか", False),  # a filing
    ],
)
def test_where_the_mail_should_go_is_the_destination_aspect(text, destination):
    assert ("destination" in aspects(normalize(text))) is destination


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("納税証明書が要るんです", {"paid"}),
        ("市税の完納証明", {"paid"}),
        ("非課税証明書はどこで", {"income"}),
        ("所得証明と納税証明の両方", {"paid", "income"}),
        ("証明書の手数料", set()),  # no kind named
    ],
)
def test_the_certificates_named(text, expected):
    assert certificates_named(normalize(text)) == expected


@pytest.mark.parametrize(
    ("text", "paid_proof"),
    [
        ("税金をちゃんと納めてるっていう証明が欲しい", True),
        ("市税を滞納してない証明書", True),
        ("固定資産税を払ったことの証明", True),
        ("収入の証明が要るんです", False),  # the income certificate
        ("給与支払証明書が欲しいんですが", False),  # a payer's statement
        ("所得証明書を郵送で", False),
    ],
)
def test_a_certificate_that_taxes_were_paid_is_the_paid_proof_aspect(text, paid_proof):
    assert ("paid_proof" in aspects(normalize(text))) is paid_proof


@pytest.mark.parametrize(
    ("text", "by_phone"),
    [
        ("スマホで住民税は払えますか", True),
        ("スマートフォンから税金を納めたい", True),
        ("スマホが壊れて納付書の写真が見られない", False),
        ("スマホで申告できますか", False),
    ],
)
def test_paying_with_a_phone_is_the_by_phone_aspect(text, by_phone):
    assert ("by_phone" in aspects(normalize(text))) is by_phone


@pytest.mark.parametrize(
    ("text", "hardship"),
    [
        ("固定資産税をお支払いするのが難しくて", True),
        ("仕事がなくなって住民税を払う余裕がないんです", True),
        ("収入が減ってしまって今月は厳しい", True),
        ("一度に払うのはきついので", True),
        ("申告の仕方が難しいんですが", False),  # hard to understand, not to pay
        ("余裕をもって納付書を送ってほしい", False),
        ("平日に行く余裕がないんですけど", False),  # no time, not no money
        ("コンビニで払えますか", False),
    ],
)
def test_a_caller_who_cannot_pay_as_due_is_the_hardship_aspect(text, hardship):
    assert ("hardship" in aspects(normalize(text))) is hardship


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("引き落とし、ちゃんとできてたか見てほしい", True),
        ("先月の分、入ってたか確認を", True),
        ("口座振替はできますか", False),
    ],
)
def test_asking_whether_something_went_through_is_the_check_aspect(text, check):
    assert ("check" in aspects(normalize(text))) is check


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("図書館って何時まで開いてますか", True),
        ("市民病院の場所を教えてください", True),
        ("公民館は日曜日休みですか", True),
        ("体育館への行き方は", True),
        ("図書館は土曜日もやってますか", True),
        ("銀行って何時まで開いてますか", True),
        # the tax office's own business, wherever it is
        ("図書館の隣の市税事務所は何時まで", False),
        ("病院に入院していて、固定資産税を払うのが難しいんです", False),
        ("入院していた病院の領収書で控除は受けられますか", False),
        # a facility named, but not its hours or place
        ("保育園に入れたので、所得証明が要ります", False),
        ("窓口は何時まで開いていますか", False),  # the tax office itself
        # a facility named on the way, or where taxes are paid
        ("郵便局で納付書って何時まで払えますか", False),
        ("保育園のお迎えがあるので、土曜日も窓口開いてますか", False),
        ("公園の近くの土地を相続しました、どこに届けたらいいですか", False),
        ("病院の帰りに寄りたいんですけど、何時までですか", False),
    ],
)
def test_asking_when_or_where_another_facility_is_open(text, expected):
    assert asks_other_facility(normalize(text)) is expected


def test_another_facilitys_hours_are_not_answered_as_the_tax_offices(understanding):
    match, decision = understanding.understand("市民プールは何時まで開いてますか")
    assert match.outside and not match.candidates
    assert decision.action.value != "answer"
    match, decision = understanding.understand("税務課の窓口は何時まで開いてますか")
    assert not match.outside and decision.faq_id == "general.office-hours"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("住民票の写しはコンビニで取れますか", True),
        ("戸籍の附票を郵送で取りたい", True),
        ("印鑑証明を代理の者が取れますか", True),
        ("転出届はどこに出せばいいですか", True),
        ("児童手当はいつ振り込まれますか", True),
        ("給付金の通知がまだ来ていないんですが", True),
        ("転入届はどこの窓口ですか", True),
        ("犬を飼い始めたので、登録の手数料を知りたいんです", True),
        ("ふるさと納税の返礼品がまだ届きません", True),
        ("戸籍謄本を兄の代わりに取りたいんですが、委任状は要りますか", True),
        # who receives a benefit, said before it, is no tax question
        ("住民税が非課税の世帯の給付金は申請が要りますか", True),
        # the paper or the filing is context for a tax question
        ("住民票を移したんですが、住民税はどちらの市に払いますか", False),
        ("住民票は実家のままなんですが、今年の分はどこの市にかかりますか", False),
        ("住民票を移したのに、前の住所に郵便が来るんです", False),
        ("住民票と所得証明書を一緒に郵送で取りたいです", False),
        ("転入届を出したばかりですが、今年の分はこっちでかかりますか", False),
        ("戸籍謄本を集めて、父の土地の名義を変えたいんです", False),
        ("父が亡くなったので戸籍を取り寄せていますが、こちらに何か届けは要りますか", False),
        ("戸籍上の妻ですが、夫の証明を代わりにもらえますか", False),
        ("印鑑登録の判子でないと、代理の書類は作れませんか", False),
        ("印鑑証明と納税証明を代理で取りたい", False),
        # a tax question about a benefit
        ("給付金の申請に非課税証明書が必要と言われました", False),
        ("給付金の対象になる非課税の世帯って、どういう人ですか", False),
        ("給付金をもらったら申告しないといけませんか", False),
        ("給付金の振り込まれた口座が差し押さえられたんです", False),
        ("住民税が非課税かどうか知りたい", False),
        ("ふるさと納税の返礼品をもらったら、控除はどうなりますか", False),
        ("原付の登録の手数料はいくらですか", False),
    ],
)
def test_asking_for_another_sections_paper(text, expected):
    surface = normalize(text)
    assert asks_other_document(surface, sound_key(surface)) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("隣の空き家の草が伸びて困っています、固定資産税は誰が払っているんですか", True),
        ("近所の空き地にごみが捨てられています", True),
        ("隣の家が倒れそうで危ないので、持ち主を教えてください", True),
        ("隣の土地の評価額と比べたいんですが", False),
        ("隣の家を買ったんですが、固定資産税はどうなりますか", False),
        ("前の家が傾いてきたので取り壊しました", False),  # the caller's own house
        # damage done to the caller's house, or the caller's own land
        ("台風で隣の家の木が倒れてきて、屋根が壊れたんですが税金は安くなりますか", False),
        ("隣の建物が崩れてきて、うちの家が半分つぶれました", False),
        ("向かいの土地もうちのなんですが、放置していても税金はかかりますか", False),
        ("隣の家の人が倒れて入院したので、代わりに税金を払いに行きたい", False),
        # the neglect far from the place named
        ("隣の家の奥さんに聞いたんですけど、固定資産税の通知に書いてあるごみ", False),
    ],
)
def test_complaint_of_a_neighbours_neglected_property(text, expected):
    assert complains_of_neighbours_property(normalize(text)) is expected


def test_a_neighbours_weeds_and_a_family_register_are_not_answered(understanding):
    for text in (
        "隣の空き家の雑草が伸び放題で、固定資産税はちゃんと払っているんでしょうか",
        "戸籍謄本を郵送で取り寄せたいんですが",
    ):
        match, decision = understanding.understand(text)
        assert match.outside and not match.candidates, text
        assert decision.action.value != "answer", text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("市税を払ってる証明が要るんです", "市税を納税証明が要る"),
        ("固定資産税をちゃんと払ってるっていう証明", "固定資産税をちゃんと納税証明"),
        ("市税を滞納してないっていう証明が必要", "市税を納税証明が必要"),  # all paid
        ("家賃を払ってる証明が必要", None),  # rent: no tax paper
        ("所得税を払ってる証明はどこで", None),  # a national tax: the 税務署's paper
        ("住民税払ってないっていう証明が欲しい", None),  # the non-taxable certificate
        ("住民税を納めてる市で課税証明もらえますか", None),  # another certificate named
        ("去年払った住民税の額の証明", None),  # an amount
        ("国の税金を払ってる証明がほしい", None),  # the 税務署's paper
        ("不動産取得税を払った証明がほしい", None),  # the prefecture's
        ("法人税を納付した証明はここで出ますか", None),  # the 税務署's
        ("ふるさと納税を納めた証明はどこで", None),  # the town's receipt
        ("税金を払ってる親の扶養の証明", None),  # a dependant's
        ("会社が赤字なんですけど会社の住民税って", None),  # an employee says it too
        # the donation's exception described by the filing it spares
        ("寄付で確定申告をしなくていい特例を使いたい", "寄付でワンストップ特例を使いたい"),
        ("ふるさと納税の確定申告が要らない特例", "ふるさと納税のワンストップ特例"),
        ("ふるさと納税で確定申告しないといけないですか", None),  # the filing itself
        ("医療費控除で確定申告しなくていい特例はありますか", None),  # no donation spoken of
        # when mail comes, asked with 来る, after a word of mail
        ("住民税のお知らせは何月ごろ来るんですか", "住民税のお知らせはいつ届く"),
        ("通知はいつ来ますか", "通知はいつ届く"),
        ("職員さんはいつ来ますか", None),  # no mail
        ("年金の通知はいつ来ますか", None),  # another section's mail
        ("還付金のお知らせは来たけど、お金はいつ来ますか", None),  # money
        # the same tax paid twice, regretted
        ("口座から落ちてたのにコンビニでも払っちゃった", "口座から二重に払ってしま"),
        ("窓口と銀行の両方で納めてしまいました", "二重に払ってしま"),
        ("同じ納付書を夫と別々に払ってしまった", "二重に払ってしま"),
        ("両親の分を別々に払ってしまった", None),  # two people's taxes
        ("夫と私の分を両方払ってしまった", None),  # no two ways of paying named
        ("二度と遅れないように払ってしまった", None),
        ("二回目の分を払っちゃった", None),
        ("所得税を二度納めてしまった", None),  # the tax office's refund
        ("窓口と口座の両方で払ってしまったので納付書を一緒に送って", None),  # asks another thing
        # a tax notice lost is its payment slips lost; not a refund's notice, nor when an
        # amount or a certificate is asked after it
        ("住民税の通知書をなくしました", "住民税の納付書をなくし"),
        ("還付の通知書をなくしました", None),
        ("通知書をなくしたので所得の証明が欲しい", None),
        ("両方で払ってもいいですか", None),  # whether both ways may be used
        ("二回に分けて払ってしまっても大丈夫ですか", None),  # instalments
        ("督促状が来たのにコンビニでも払っちゃって大丈夫", None),  # paying late
    ],
)
def test_what_a_caller_describes_is_named_as_the_tax_office_names_it(text, expected):
    surface = normalize(text)
    renamed = named_outright(surface)
    if expected is None:
        assert renamed == surface
    else:
        assert renamed.startswith(normalize(expected))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("墓地の使用許可の申し込みはどこですか", True),
        ("主人の納骨で市営霊園に申し込みたいんですが", True),
        ("公民館の予約をしたいんですけど", True),
        ("銀行で申し込めますか", False),  # an account transfer is applied for there
        ("母が病院にいて来られないので代理で申し込みたいんです", False),  # where she is
        ("高校生の子の分も一緒に申し込みできますか", False),
    ],
)
def test_applying_to_use_another_sections_facility(text, expected):
    assert asks_other_facility(normalize(text)) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("関税の払い方を教えて", True),  # the customs' duty: no entry's
        ("たばこ税の申告", True),
        ("関税と住民税の違い", False),  # a covered tax named beside it
    ],
)
def test_taxes_no_entry_covers(text, expected):
    from faq.aspects import UNCOVERED_TAXES

    taxes = taxes_named(normalize(text))
    assert (bool(taxes) and taxes <= UNCOVERED_TAXES) is expected, taxes


def test_a_filing_at_another_counter_asked_by_its_procedure(understanding):
    """「転出届の手続きは何を持って」 asks how to file at another counter: no tax entry is
    answered; a move dated by its filing is still the tax question it is."""
    from voicebot.policy import BotAction

    _, decision = understanding.understand("転出届の手続きって何を持っていけばいいですか")
    assert decision.action is BotAction.NOT_A_TAX, decision
    moved = "転出届の手続きは済ませたんですが、住民税はどこに払いますか"
    _, decision = understanding.understand(moved)
    assert decision.faq_id == "juminzei.moved", decision
