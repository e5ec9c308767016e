"""Every sentence a person reads, in Simplified Chinese (``zh``) and English (``en``).

Templates are looked up by a stable key and a language, Mailman style:
``templates/<lang>/<key>.txt``.  Rendering is strict: a missing variable is an
error in tests, not a blank in a customer's mail.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

LANGUAGES = ("zh", "en")
_ROOT = Path(__file__).resolve().parent


class Renderer:
    def __init__(self, root: Path = _ROOT) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(root)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, key: str, lang: str, **context) -> str:
        if lang not in LANGUAGES:
            lang = "en"
        return self._env.get_template(f"{lang}/{key}.txt").render(**context)

    def keys(self, lang: str) -> list[str]:
        return sorted(p.stem for p in (_ROOT / lang).glob("*.txt"))


@lru_cache(maxsize=1)
def default_renderer() -> Renderer:
    return Renderer()
