"""Which language to answer in: Chinese when the customer wrote Chinese, else English."""
from __future__ import annotations

import re

_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_LETTER = re.compile(r"[^\W\d_]")  # ideographs count as letters too
# Enough text to judge; a long mail is not read to its end.
_SAMPLE = 5000


def detect_language(*texts: str) -> str:
    """"zh" when at least 2 ideographs make up at least 10% of the letters, else "en".

    A Chinese name in an English mail, or an English signature under a Chinese
    mail, does not flip the answer.
    """
    sample = " ".join(t[:_SAMPLE] for t in texts if t)
    ideographs = len(_IDEOGRAPH.findall(sample))
    if ideographs < 2:
        return "en"
    letters = len(_LETTER.findall(sample))
    return "zh" if ideographs * 10 >= letters else "en"
