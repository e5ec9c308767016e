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

Quoted mail is marked as a text client would mark it: the content of a quote
container (``<blockquote type="cite">``, Gmail's ``gmail_quote``, Yahoo's
``yahoo_quoted``, NetEase's ``ntes-mailmaster-quote`` ...; the list is in
``quote_vocabulary``) becomes ``> `` lines, and after Outlook's markers
(``#appendonsend``, ``#divRplyFwdMsg``, the top-ruled header block) the rest
of the document does.  Flattened without marks, a quote could not be told
from new text, and commands in our own quoted mails would count again.  The
attribution inside a container (Gmail's ``gmail_attr``) stays unprefixed,
above the quote.  A mail without such containers comes out unchanged; a bare
``<blockquote>`` is indentation, not a quote.
"""
from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

from maildesk.parsers import quote_vocabulary as vocab
from maildesk.parsers.reply import quote_header_end

# Elements that end the current line.
_BLOCK = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol", "dl",
          "dt", "dd", "pre", "hr", "section", "article", "header", "footer", "nav", "aside", "address",
          "figure", "figcaption", "center", "form", "fieldset", "caption", "thead", "tbody", "tfoot"}
_SKIP = {"script", "style", "head", "title", "template", "xml"}
_CELL = {"td", "th"}
# Elements without an end tag: never on the stack of open elements.
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
         "wbr", "keygen", "basefont", "frame", "isindex"}

# Where the quote depth changes, a private-use character and the new depth (as another private-use
# character) go into the output; text() turns them into "> " prefixes.
_DEPTH_MARK = "\ue000"
_DEPTH_BASE = 0xE100
_MAX_DEPTH = 32
# Lines at the top of a quote container searched for its header (an attribution, a "From:/Sent:" block).
_HEADER_REACH = 32

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
        # Open elements as (tag, kind): kind is "quote" (a quote <blockquote>), "container" (a quote
        # <div> and the like), "attribution", or "" for any other element.
        self._open: list[tuple[str, str]] = []
        self._open_count: dict[str, int] = {}
        self._kinds = {"quote": 0, "container": 0, "attribution": 0}
        self._rest_quoted = False  # after an Outlook marker: the rest of the document is quote
        self._depth = 0  # quote depth of the output so far
        self._marked = False

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
        text = "".join(self._out)
        return _prefix_quotes(text) if self._marked else text

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
        self._close(tag)
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
        if _DEPTH_MARK in data:
            data = data.replace(_DEPTH_MARK, "")
        if self._pre:
            self._write(data.replace("\r\n", "\n").replace("\r", "\n"))
        else:
            self._write(_HTML_SPACE.sub(" ", data))

    def _start(self, tag, attrs):
        if tag not in _VOID:
            kind = _quote_kind(tag, attrs) if attrs else ""
            self._open.append((tag, kind))
            self._open_count[tag] = self._open_count.get(tag, 0) + 1
            if kind:
                self._kinds[kind] += 1
        if not self._rest_quoted and attrs and _starts_quoted_rest(attrs):
            self._rest_quoted = True
        self._update_depth()
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

    def _close(self, tag):
        """Close the innermost open `tag` and whatever was left open inside it (tolerant of bad nesting)."""
        if not self._open_count.get(tag):
            return  # a stray end tag: nothing to close (and no search through the stack)
        while self._open:
            open_tag, kind = self._open.pop()
            self._open_count[open_tag] -= 1
            if kind:
                self._kinds[kind] -= 1
            if open_tag == tag:
                break
        self._update_depth()

    def _update_depth(self):
        kinds = self._kinds
        depth = max(1 if kinds["container"] or self._rest_quoted else 0, kinds["quote"])
        if kinds["attribution"] and depth:
            depth -= 1
        depth = min(depth, _MAX_DEPTH)
        if depth != self._depth:
            self._end_line()
            self._out.append(_DEPTH_MARK + chr(_DEPTH_BASE + depth))
            self._depth = depth
            self._marked = True

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


def _quote_kind(tag: str, attrs: list[tuple[str, str | None]]) -> str:
    """"quote", "container", "attribution" or "" for an element with these attributes."""
    classes = ""
    ident = ""
    quote = False
    for name, value in attrs:
        value = (value or "").lower()
        if name == "class":
            classes = value
        elif name == "id":
            ident = value
        elif tag == "blockquote" and ((name == "type" and value == "cite") or name == "cite"):
            quote = True
        elif tag == "blockquote" and name == "style":
            style = "".join(value.split())
            quote = quote or any(rule in style and not style.split(rule, 1)[1].startswith(("none", "0"))
                                 for rule in vocab.HTML_QUOTE_STYLES)
        elif name == "name" and value == "quote":  # GMX
            quote = True
    if classes and any(c in token for token in classes.split() for c in vocab.HTML_ATTRIBUTION_CLASSES):
        return "attribution"
    if (classes and any(c in token for token in classes.split() for c in vocab.HTML_QUOTE_CLASSES)) \
            or (ident and any(i in ident for i in vocab.HTML_QUOTE_IDS)):
        quote = True
    if not quote:
        return ""
    return "quote" if tag == "blockquote" else "container"


def _starts_quoted_rest(attrs: list[tuple[str, str | None]]) -> bool:
    """Is this element Outlook's mark that everything from here on is the quoted mail?"""
    for name, value in attrs:
        value = (value or "").lower()
        if name == "id" and any(i == value or value.endswith(i) for i in vocab.HTML_QUOTE_REST_IDS):
            return True
        if name == "class" and any(c in token for token in value.split() for c in vocab.HTML_QUOTE_REST_CLASSES):
            return True
        if name == "style":
            style = "".join(value.split())
            if any(rule in style for rule in vocab.HTML_QUOTE_REST_STYLES):
                return True
    return False


def _prefix_quotes(text: str) -> str:
    """Turn the depth marks into "> " prefixes.

    Each line takes the depth at its first visible character.  Where the depth rises, the header at the
    top of the quoted mail ("On … wrote:", "From:/Sent:" …) keeps the depth around it: like a text
    client, the attribution stands above the quote and only the quoted body is prefixed.
    """
    lines: list[str] = []
    depths: list[int | None] = []  # None: a blank line
    depth = 0
    for line in text.split("\n"):
        pieces = line.split(_DEPTH_MARK)
        visible = [pieces[0]]
        line_depth = depth if pieces[0].strip() else None
        for piece in pieces[1:]:
            depth = ord(piece[0]) - _DEPTH_BASE if piece else depth
            rest = piece[1:]
            if line_depth is None and rest.strip():
                line_depth = depth
            visible.append(rest)
        lines.append("".join(visible).strip())
        depths.append(line_depth)
    outer = 0  # depth of the last non-blank line
    i = 0
    while i < len(lines):
        d = depths[i]
        if d is not None and d > outer:
            region_end = i  # the top of the quoted mail: up to where the depth falls again
            limit = min(len(lines), i + _HEADER_REACH)
            while region_end < limit and (depths[region_end] is None or depths[region_end] >= d):
                region_end += 1
            header = quote_header_end(lines[i:region_end])
            for k in range(i, i + header):
                if depths[k] is not None:
                    depths[k] = outer
            outer = d
            i += max(header, 1)
            continue
        if d is not None:
            outer = d
        i += 1
    # A blank line inside a quote is a bare ">" line, as text clients write it, so a quote stays one block.
    out: list[str] = []
    next_depth = 0
    inside = [0] * len(lines)
    for k in range(len(lines) - 1, -1, -1):
        if depths[k] is not None:
            next_depth = depths[k]
        inside[k] = next_depth
    previous = 0
    for line, d, after in zip(lines, depths, inside):
        if d is None:
            level = min(previous, after)
            if level and out and out[-1] != ">" * level:
                out.append(">" * level)
            elif not level:
                out.append("")
            continue
        previous = d
        out.append("> " * d + line if d else line)
    return "\n".join(out)


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
