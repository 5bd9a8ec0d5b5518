"""What a caller takes back while speaking.

Callers who have not prepared correct themselves: 「所得証明…あ、違う、税金を納めた証明書
のほうです」, 「固定資産税じゃなくて住民税のほうの通知」. The words taken back name another
entry's subject as plainly as the words meant, and matched together they often pick the
wrong one. ``taken_back`` removes them before the text is matched:

- a restart: everything before 「あ、違う、」 (いや、違う / 間違えた), which the caller withdrew;
- a denial: the noun phrase right before 「じゃなくて」 or 「ではなくて」 (not 「じゃなくても」,
  which asks whether something else will do: 本人じゃなくても取れますか).

Both need the punctuation a transcript carries (the recogniser writes 、 and …): the denied
phrase runs back only to a comma, an ellipsis or a particle (を, が, は, に, で, も, と), at
most ``DENIED_MAX_CHARS`` characters, so 「税の郵便を自宅じゃなくて事務所に」 loses 自宅
alone. Without punctuation nothing is removed. The work is one regular-expression pass
each, linear in the text.
"""

from __future__ import annotations

import re

DENIED_MAX_CHARS = 10

_BOUNDARY = r"、。，．,.…‥？！?!\s「」"
# 「あ、違う、」, 「いや、違います。」, 「間違えた、」: the caller withdraws what came before
_RESTART = re.compile(
    rf"(?:^|(?<=[{_BOUNDARY}]))(?:あっ?|いや|いえ)?[、,]?(?:いや|いえ)?[、,]?"
    rf"(?:違う|ちがう|違った|違います|間違えた|間違えました|まちがえた)[{_BOUNDARY}]+"
)
# 「固定資産税じゃなくて」, 「軽…じゃなくて」: the phrase denied, back to a boundary or a particle
_DENIED = re.compile(
    rf"(?:^|(?<=[{_BOUNDARY}をがはにでもと]))"
    rf"[^{_BOUNDARY}をがはにでもと]{{1,{DENIED_MAX_CHARS}}}[…‥]*"
    r"(?:じゃ|では|でわ)(?:なくて(?!も)|なく(?=[、,]))[、,]?"
)


def taken_back(text: str) -> str:
    """``text`` without what the caller withdrew or denied (see the module's docstring)."""
    restarts = list(_RESTART.finditer(text))
    if restarts and restarts[-1].end() < len(text):
        text = text[restarts[-1].end() :]
    return _DENIED.sub("", text)
