"""Where Japanese speakers pause mid-sentence.

Callers often stop after 「〜んですが」「〜は」「〜て」 to think, then go on. A transcript
that ends like that is probably half a question, so the call waits a little longer before
answering it (see ``CallConfig.hold_incomplete_ms``).
"""

from __future__ import annotations

import re

_INCOMPLETE = re.compile(
    r"(?:んですが|ですが|んですけど|ですけど|けど|けれど(?:も)?|が|て|で|し|と|ので|から|の"
    r"|のに|ても|たら|れば|てね|でね|は|を|に|も|って|、)$"
    r"|^(?:あの|あのね|あのう|えっと|ええと|えー|その|もしもし)$"  # only a filler so far
)


def looks_unfinished(text: str) -> bool:
    """True if a transcript ends where Japanese speakers pause mid-sentence."""
    core = text.strip().rstrip("。. ")
    return bool(_INCOMPLETE.search(core))
