"""Fixed words the bot speaks. Polite, short, and easy to hear on a phone line."""

from __future__ import annotations

GREETING = (
    "お電話ありがとうございます。こちらは市税のお問い合わせに、AIが自動でお答えする窓口です。"
    "AIの回答には誤りが含まれる場合があります。"
    "職員とお話しになりたい場合は「担当者」とおっしゃるか、0番を押してください。"
    "ご質問をどうぞ。"
)
ANYTHING_ELSE = "ほかにご質問はありますか。"
CONFIRM_TOPIC = "{title}についてのご質問でよろしいでしょうか。"
CONFIRM_HOW = "よろしければ「はい」か1番、違う場合は「いいえ」か2番でお答えください。"
CHOICE_FIRST = "{title}と、"
CHOICE_SECOND = "{title}の、どちらについてのご質問でしょうか。"
CHOICE_HOW = "前の方でしたら1番、後の方でしたら2番を押すか、どちらかをお話しください。"
CONFIRM_DENIED = "失礼いたしました。お手数ですが、もう一度ご質問をお話しください。"
REPROMPT = (
    "申し訳ありません、うまくお聞き取りできませんでした。もう一度、ご質問を短めにお話しください。"
)
# Played when the reply is late (slow recognition or synthesis), so the caller never waits
# in silence: 「はい。」 at once, then the fillers while the wait goes on.
ACKNOWLEDGE = "はい。"
FILLER = "少々お待ちください。"
FILLER_AGAIN = "もうしばらくお待ちください。"
REPEAT_PREFIX = "もう一度申し上げます。"
# The caller asked for a moment (「ちょっと待ってください」): the bot waits longer than usual
# for them, then asks once whether they are ready.
HOLD = "はい、このままお待ちしております。ご準備ができましたら、お話しください。"
HOLD_STILL = "はい、このままお待ちしております。"
HOLD_OVER = "ご準備はいかがでしょうか。"
HOLD_OVER_AGAIN = "改めてお伺いします。"
GO_AHEAD = "ご質問がございましたら、お話しください。"
# The caller checks the line or is back (「もしもし」, 「お待たせしました」).
RESUME = "はい、聞こえております。"
NOTHING_TO_REPEAT = "まだご案内した内容はございません。ご質問をどうぞ。"
TRANSFER = "担当の職員におつなぎします。そのまま少々お待ちください。"
TRANSFER_AFTER_FAILURE = (
    "申し訳ありません、うまくお答えできませんでしたので、担当の職員におつなぎします。"
    "少々お待ちください。"
)
OUT_OF_HOURS = (
    "申し訳ありません、ただいまは職員の対応時間外です。"
    "職員の対応時間は、{office_hours}です。恐れ入りますが、時間内に改めてお電話ください。"
)
# A clearly asked question about something that is not a tax (the water bill, another
# facility's hours, a residence certificate): said plainly, rather than
# 「うまくお聞き取りできませんでした」 to a caller who was heard.
NOT_A_TAX = (
    "申し訳ありません、こちらは市税のお問い合わせ窓口のため、税金以外のご用件については"
    "ご案内できません。恐れ入りますが、{office_phone}にお電話いただき、担当の窓口にお問い合わせ"
    "ください。"
)
NOT_A_TAX_UNLESS = "市税についてのご質問でしたら、お手数ですが、もう一度お話しください。"
OFFER_TRANSFER = "おつなぎする場合は「はい」か1番を、ほかにご質問があれば、そのままお話しください。"
GOODBYE = "お電話ありがとうございました。失礼いたします。"
SILENT_LINE = "お声が確認できませんでしたので、お電話を終了させていただきます。"
APOLOGY_FAILURE = "申し訳ありません、システムに不具合が発生しました。担当の職員におつなぎします。"
APOLOGY_FAILURE_CLOSED = "申し訳ありません、システムに不具合が発生しました。"
SHUTDOWN = "申し訳ありません、システム保守のため、自動応答をここで終了させていただきます。"
SHUTDOWN_TRANSFER = "担当の職員におつなぎします。そのまま少々お待ちください。"
CALL_AGAIN = "恐れ入りますが、{office_hours}に、改めてお電話ください。"
# Staff could not be reached earlier in the call: the caller is not put on hold again.
STAFF_UNREACHABLE = "申し訳ありません、ただいま職員におつなぎできません。"
TRANSFER_FAILED = (
    "申し訳ありません、ただいま職員におつなぎできませんでした。"
    "恐れ入りますが、{office_hours}に、改めてお電話ください。"
)
