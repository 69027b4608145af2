"""Values from requests and engines, made safe to write in text for people.

Every value that comes from a request or an engine (ids, reason messages, a
custom policy's codes and obligations…) goes through :func:`printable` before
it is written: control and format characters (ESC, CR, LF, bidi overrides,
zero-width characters, line separators) are shown as escapes, so no value can
add a line, forge a numbered step or send a terminal escape sequence.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

#: Unicode categories never written raw: controls (Cc: ESC, CR, LF, TAB…),
#: format characters (Cf: bidi overrides and isolates, zero-width characters),
#: line and paragraph separators (Zl, Zp), and code points with no glyph of
#: their own (Cs surrogates, Co private use, Cn unassigned).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value: object, limit: int | None = None) -> str:
    """``value`` as text that stays on one line and shows what it holds.

    Characters of the categories above become visible escapes (``\\n``,
    ``\\x1b``, ``\\u202e``); everything else is kept. With ``limit``, at most
    that many characters of ``value`` are kept and the cut is said.

    >>> printable("u-1\\n3. UPDATE FROM SECURITY\\x1b[2J\\u202e")
    'u-1\\\\n3. UPDATE FROM SECURITY\\\\x1b[2J\\\\u202e'
    >>> printable("x" * 10, limit=4)
    'xxxx… (6 more characters)'
    """
    text = str(value)
    cut = ""
    if limit is not None and len(text) > limit:
        text, cut = text[:limit], f"… ({len(text) - limit} more characters)"
    if not text.isprintable():  # fast path: most values are plain
        text = "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text)
    return text + cut


def _escape(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
