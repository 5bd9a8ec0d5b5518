"""What a caller takes back while speaking.

Callers who have not prepared correct themselves: 「所得証明…あ、違う、税金を納めた証明書
のほうです」, 「固定資産税じゃなくて住民税のほうの通知」. The tax or the paper taken back
names another entry's subject as plainly as the one meant, and matched together they often
pick the wrong entry. ``taken_back`` removes the tax or paper withdrawn, and nothing else:

- a restart (「あ、違う、」, いや、違います, 間違えた): the taxes and papers named before it,
  when the words after it name one (「納付書をなくした、いや、違う、固定資産税のだ」 keeps
  the lost slip and changes only the tax);
- a denial: the phrase right before 「じゃなくて」 or 「ではなくて」 when it names a tax or a
  paper (「介護保険じゃなくて住民税の天引き」); not 「…だけじゃなくて」, which adds, nor
  「じゃなくても」, which asks whether another will do, nor a denied way of doing something
  (「給料から天引きじゃなくて、自分で払いたい」 asks about that very thing).

A tax or paper is a word ending in 税, 証明(書), 保険(料) or 申告, or the income words 所得
and 収入 (``_NAMED``). Both rules need the punctuation a transcript carries (the recogniser
writes 、 and …): the denied phrase runs back only to a comma, an ellipsis or a particle, at
most ``DENIED_MAX_CHARS`` characters. Each is one regular-expression pass, linear in the text.
"""

from __future__ import annotations

import re

DENIED_MAX_CHARS = 10

_BOUNDARY = r"、。，．,.…‥？！?!\s「」"
_TAX_OR_PAPER = r"税|証明書?|保険料?|申告"
_INCOME = r"所得|収入"
_NAMED = re.compile(rf"[一-龥ァ-ヶー]*(?:{_TAX_OR_PAPER})|{_INCOME}")
# 「あ、違う、」, 「いや、違います。」, 「間違えた、」: the caller withdraws what came before
_RESTART = re.compile(
    rf"(?:^|(?<=[{_BOUNDARY}]))(?:あっ?|いや|いえ)?[、,]?(?:いや|いえ)?[、,]?"
    rf"(?:違う|ちがう|違った|違います|間違えた|間違えました|まちがえた)[{_BOUNDARY}]+"
)
# 「固定資産税じゃなくて」, 「介護保険…じゃなくて」: the phrase denied, back to a boundary or a
# particle
_DENIED = re.compile(
    rf"(?:^|(?<=[{_BOUNDARY}をがはにでもと]))"
    rf"(?P<denied>[^{_BOUNDARY}をがはにでもと]{{1,{DENIED_MAX_CHARS}}})[…‥]*"
    r"(?:じゃ|では|でわ)(?:なくて(?!も)|なく(?=[、,]))[、,]?"
)
_ADDED = ("だけ", "のみ", "ばかり")
# the denied phrase ends in the tax or paper itself (住民税の天引きじゃなくて denies the
# deduction, not the tax)
_DENIED_NAMED = re.compile(rf"(?:{_TAX_OR_PAPER}|{_INCOME})(?:の|のほう|の方)?$")


def _denial(m: re.Match[str]) -> str:
    denied = m.group("denied")
    if denied.endswith(_ADDED) or not _DENIED_NAMED.search(denied):
        return m.group()
    if "証明" in denied and "証明" in m.string[m.end() :]:
        return m.group()  # a paper for a paper (非課税証明じゃなくて課税の証明): both count
    return ""


def taken_back(text: str) -> str:
    """``text`` without the taxes and papers the caller withdrew or denied (see the
    module's docstring)."""
    restarts = list(_RESTART.finditer(text))
    if restarts:
        last = restarts[-1]
        after = text[last.end() :]
        if _NAMED.search(after):
            text = _NAMED.sub("", text[: last.start()]) + "、" + after
    return _DENIED.sub(_denial, text)
