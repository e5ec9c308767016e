"""HTML mail as readable plain text, with the standard library's parser.

Scripts, styles, the head and comments disappear; a block element (p, div,
li, tr, h1-h6, blockquote ...) ends the current line, and only ``<br>`` makes
an empty one, so ``<div>text</div><div><br></div>`` leaves one blank line as
the writer saw it; whitespace collapses as a browser would collapse it;
entities are unescaped; links keep their text and, when it differs, their
address.

``html.parser`` rescans the rest of the document for every ``<`` it cannot
complete (``</``, ``<?``, ``<!`` without ``>``), which is quadratic on hostile
input.  So the markup is first tokenised here in one linear pass: comments and
declarations are dropped, and a ``<`` that does not open a complete tag is
escaped, leaving the parser only tags it can finish at once.
"""
from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

# Elements that end the current line.
_BLOCK = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol", "dl",
          "dt", "dd", "pre", "hr", "section", "article", "header", "footer", "nav", "aside", "address",
          "figure", "figcaption", "center", "form", "fieldset", "caption", "thead", "tbody", "tfoot"}
_SKIP = {"script", "style", "head", "title", "template", "xml"}
_CELL = {"td", "th"}

_TOKEN = re.compile(r"""
    (?P<comment><!--)
  | (?P<tag></?[A-Za-z](?:[^<>"']|"[^"<]*"|'[^'<]*')*>)
  | (?P<declaration><[!?][^<>]*>)
  | (?P<lone><)
""", re.X)
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
_LINE_SPACE = re.compile(r"[ \t\r\f\v\xa0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Readable text of an HTML document or fragment."""
    clean = _defuse(html)
    parser = _TextExtractor()
    try:
        parser.feed(clean)
        parser.close()
        text = parser.text()
    except Exception:  # noqa: BLE001 - whatever the parser trips on, tags stripped bluntly still read
        text = unescape(re.sub(r"<[^<>]*>", " ", clean))
    return _tidy(text)


def _defuse(html: str) -> str:
    out: list[str] = []
    position = 0
    length = len(html)
    while position < length:
        match = _TOKEN.search(html, position)
        if match is None:
            out.append(html[position:])
            break
        out.append(html[position:match.start()])
        kind = match.lastgroup
        if kind == "comment":
            end = html.find("-->", match.end())
            if end == -1:
                break  # an unclosed comment hides the rest, as in a browser
            position = end + 3
            continue
        if kind == "tag":
            out.append(match.group())
        elif kind == "lone":
            out.append("&lt;")
        position = match.end()
    return "".join(out)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._newlines = 0          # line breaks at the end of the output so far
        self._has_text = False
        self._skipping: dict[str, int] = {}
        self._pre = 0
        self._link: tuple[str, list[str]] | None = None

    # -- output ---------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        if not text:
            return
        self._out.append(text)
        if self._link is not None:
            self._link[1].append(text)
        if text.strip(" "):
            self._has_text = True
            self._newlines = len(text) - len(text.rstrip("\n"))

    def _end_line(self) -> None:
        """End the current line, unless it is empty (or nothing was written yet)."""
        if self._has_text and self._newlines == 0:
            self._out.append("\n")
            self._newlines = 1

    def text(self) -> str:
        self._end_link()
        return "".join(self._out)

    # -- parser callbacks -----------------------------------------------------------------

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self._skipping[tag] = self._skipping.get(tag, 0) + 1
            return
        if tag == "body":
            # An unclosed <head> must not swallow the body.
            self._skipping.pop("head", None)
            self._skipping.pop("title", None)
        if self._skipping_any():
            return
        self._start(tag, attrs)

    def handle_startendtag(self, tag, attrs):
        if tag in _SKIP or self._skipping_any():
            return
        self._start(tag, attrs)
        if tag != "br":
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in _SKIP:
            if self._skipping.get(tag):
                self._skipping[tag] -= 1
            return
        if self._skipping_any():
            return
        if tag == "a":
            self._end_link()
        elif tag in _BLOCK:
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
            self._end_line()
        elif tag in _CELL:
            self._write(" ")

    def handle_data(self, data):
        if self._skipping_any():
            return
        if self._pre:
            self._write(data.replace("\r\n", "\n").replace("\r", "\n"))
        else:
            self._write(_HTML_SPACE.sub(" ", data))

    def _start(self, tag, attrs):
        if tag == "br":
            self._out.append("\n")
            self._newlines += 1
            if self._link is not None:
                self._link[1].append("\n")
        elif tag == "a":
            self._end_link()  # links do not nest; a new one closes the open one
            self._link = (dict(attrs).get("href") or "", [])
        elif tag in _BLOCK:
            self._end_line()
            if tag == "pre":
                self._pre += 1
            elif tag == "li":
                self._write("- ")
        elif tag in _CELL:
            self._write(" ")

    def _end_link(self):
        if self._link is None:
            return
        href, pieces = self._link
        self._link = None
        href = "".join(href.split())
        label = " ".join("".join(pieces).split())
        if href and not href.lower().startswith(("#", "javascript:", "cid:", "data:")) \
                and _bare(href) != _bare(label):
            self._write(f" ({href})")

    def _skipping_any(self) -> bool:
        return any(self._skipping.values())


def _bare(url: str) -> str:
    url = url.lower()
    for prefix in ("mailto:", "https://", "http://", "tel:"):
        if url.startswith(prefix):
            url = url[len(prefix):]
            break
    return url.rstrip("/")


def _tidy(text: str) -> str:
    lines = [_LINE_SPACE.sub(" ", line).strip(" ") for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")
