"""HTML mail as readable plain text, with the standard library's parser.

Scripts, styles, the head and comments disappear; block elements become line
breaks; links keep their text and, when it differs, their address.  The
parser is linear in the input, so a 200 kB line costs what its bytes cost.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table",
          "ul", "ol", "pre", "hr", "section", "article", "header", "footer", "dt", "dd"}
_SKIP = {"script", "style", "head", "title", "noscript", "template", "svg", "object", "iframe"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._href: list[tuple[str | None, int]] = []
        self._line_has_text = False

    def _break(self, hard: bool = False) -> None:
        # Block edges end the current line; only <br> makes an empty one.
        if hard or self._line_has_text:
            self.parts.append("\n")
            self._line_has_text = False

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self._skip_depth += 1
        elif tag == "br":
            self._break(hard=True)
        elif tag in _BLOCK:
            self._break()
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self._href.append((dict(attrs).get("href"), len(self.parts)))
        elif tag == "td" or tag == "th":
            self.parts.append(" ")

    def handle_startendtag(self, tag, attrs):
        if tag == "br":
            self._break(hard=True)
        elif tag in _BLOCK:
            self._break()

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK and tag != "br":
            self._break()
        if tag == "a" and self._href:
            href, start = self._href.pop()
            text = "".join(self.parts[start:]).strip()
            if href and not href.startswith(("#", "javascript:", "cid:")) and href.removeprefix("mailto:") != text:
                self.parts.append(f" ({href})")

    def handle_data(self, data):
        if not self._skip_depth:
            self.parts.append(data)
            if data.strip():
                self._line_has_text = True


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - malformed HTML: strip tags the blunt way
        return _collapse(re.sub(r"<[^>]*>", " ", html))
    return _collapse("".join(parser.parts))


def _collapse(text: str) -> str:
    lines = [" ".join(line.replace("\xa0", " ").split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()
