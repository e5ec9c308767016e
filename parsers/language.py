"""Which language to answer in: Chinese when the customer wrote Chinese."""
from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_LETTER = re.compile(r"[^\W\d_]")


def detect_language(*texts: str) -> str:
    sample = " ".join(t[:4000] for t in texts if t)
    cjk = len(_CJK.findall(sample))
    letters = len(_LETTER.findall(sample))
    # Ideographs carry a word each; a few in mostly-Latin text (a name) do not make it Chinese.
    return "zh" if cjk >= 2 and cjk * 4 >= letters * 0.4 else "en"
