"""Does this text look like a credential? A conservative, dependency-free detector.

Used wherever the package stores or logs a value it did not write itself: the
decision-log records (every credential-shaped string in a record's input and
result is masked), :class:`~helpdesk_policy.evidence.Evidence` (an identifier
field refuses one), obligation items (``done_by``). It errs towards flagging:
a false positive masks an identifier in a log, a false negative writes a
secret into an append-only ledger that can never be cleaned.

What it catches:

* well-known key formats anywhere in the text: AWS access key ids
  (``AKIA…``, ``ASIA…``), GitHub tokens (``ghp_``, ``gho_``, ``ghu_``,
  ``ghs_``, ``ghr_``, ``github_pat_``), Slack (``xoxb-``…), Stripe
  (``sk_live_``, ``rk_live_``), OpenAI and Anthropic (``sk-…``), Google API
  keys (``AIza…``), GitLab (``glpat-``), JWTs (``eyJ….….…``), PEM private
  keys, URLs with a password (``https://user:pass@host``) and assignments
  (``password=…``, ``passwd: …``, ``secret=…``, ``token=…``);
* one-time codes: a string that is only 6 to 8 digits, optionally in two
  groups (``123456``, ``123 456``, ``1234-5678``);
* recovery codes: three or more groups of 4 to 5 letters and digits joined
  by ``-``, with digits in them (``7f3k-9d2m-x8q1``);
* long high-entropy tokens: 20 or more characters of ``[A-Za-z0-9+/=_-]``
  with digits and letters, few separators, and a Shannon entropy of at least
  3.5 bits per character.

What it leaves alone (the package's own formats and ordinary identifiers):
uuid4 decision ids, ``sha256:<hex>`` digests, ``pid:<16 hex>`` pseudonyms,
ISO 8601 timestamps, ticket ids (``INC0012345``, ``INC-2026-0042``,
``PROJ-123``), identity ids (``u-1042``, ``svc-billing``,
``alice@example.com``), reason codes and phone numbers in international form
(``+44 20 7946 0000``: a leading ``+`` makes digits a phone number, not a code).

>>> looks_like_credential("AKIAIOSFODNN7EXAMPLE")
True
>>> looks_like_credential("123 456"), looks_like_credential("+44 20 7946 0000")
(True, False)
>>> looks_like_credential("INC-2026-0042"), looks_like_credential("7f3k-9d2m-x8q1")
(False, True)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from pydantic_core import PydanticCustomError

__all__ = ["looks_like_credential", "ticket_id_looks_like_credential", "not_a_credential", "not_a_credential_ticket",
           "CREDENTIAL_MASK"]

#: What a credential-shaped value is replaced with in a decision-log record.
CREDENTIAL_MASK = "[masked:credential]"

# Not preceded by a letter or digit: "desk-…" must not read as "sk-…".
_B = r"(?<![A-Za-z0-9])"

#: Formats with a recognisable shape, searched anywhere in the text. Each is
#: tried only when one of its literal markers occurs (a plain substring test),
#: so that ordinary text (a reason's sentence) costs a few ``in`` checks.
_KNOWN: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (markers, re.compile(pattern)) for markers, pattern in [
        (("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"),   # AWS access key id
         _B + r"A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        (("gh",), _B + r"gh[pousr]_[A-Za-z0-9]{20,}"),                        # GitHub
        (("github_pat_",), _B + r"github_pat_[A-Za-z0-9_]{20,}"),
        (("xox", "xapp-"), _B + r"(?:xox[abprs]|xapp)-[A-Za-z0-9-]{8,}"),     # Slack
        (("k_live_", "k_test_"), _B + r"[sr]k_(?:live|test)_[A-Za-z0-9]{10,}"),  # Stripe
        (("sk-",), _B + r"sk-(?:ant-|proj-|svcacct-)?[A-Za-z0-9_-]{20,}"),     # OpenAI, Anthropic
        (("AIza",), _B + r"AIza[0-9A-Za-z_-]{30,}"),                          # Google API key
        (("glpat-",), _B + r"glpat-[0-9A-Za-z_-]{20,}"),                      # GitLab
        (("eyJ",), _B + r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),  # JWT (may be unsigned)
        (("PRIVATE KEY",), r"-----BEGIN[A-Z0-9 ]* PRIVATE KEY[A-Z ]*-----"),  # PEM
        (("://",), r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),        # user:password@ in a URL
    ]
)

#: Any marker of :data:`_KNOWN`, in one pass (a literal alternation scans fast).
_ANY_MARKER = re.compile("|".join(re.escape(m) for markers, _ in _KNOWN for m in markers))

#: What every catch needs one of: a marker, a ``:`` or ``=``, three digits in
#: a row, or a run of 14 token characters. Text with none of them (most of a
#: record: enum values, codes, words) is let through after one scan.
_SUSPECT = re.compile(r"[:=]|[0-9]{3}|[A-Za-z0-9+/=_-]{14}|" + _ANY_MARKER.pattern)

#: A word naming a secret, just before a ``:`` or ``=`` (``password=…``,
#: ``passwd: …``, ``"token": "…"``, ``otp=…``); searched back from each ``:``
#: and ``=`` only, which ordinary text has few of.
_ASSIGNED_NAME = re.compile(
    r"(?i:(?<![a-z0-9])(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|otp|passcode|pin)[\"']?\s*)$"
)
_ASSIGNED_VALUE = re.compile(r"\s*[\"']?[^\s\"',;]")
#: A code named in prose: ``my OTP is 123456``, ``backup code: 4821 9930``.
_NAMED_CODE = re.compile(
    r"(?i:(?<![a-z0-9])(?:otp|one[- ]time (?:code|password|passcode)|verification code|security code|"
    r"backup code|recovery code|passcode|mfa code|2fa code)[^0-9\n]{0,16}\d{3,4}[ -]?\d{3,4}(?![0-9]))"
)
_CODE_WORDS = ("otp", "code", "one-time", "one time")
_THREE_DIGITS = re.compile(r"[0-9]{3}")

#: A one-time code: only 6 to 8 digits, or two groups of 3-4 digits (``123 456``).
_OTP = re.compile(r"\d{6,8}|\d{3,4}[ -]\d{3,4}")

#: A recovery code: 3+ dash-joined groups of 4-5 letters and digits, alone in its word.
_RECOVERY = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z0-9]{4,5}(?:-[A-Za-z0-9]{4,5}){2,}(?![A-Za-z0-9-])")

#: A run of token characters: a candidate recovery code (14 or more) or token (20 or more).
_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/=_-]{14,}")
_SIGN = re.compile(r"[:=]")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: A hex run after one of these is a digest the package (or a tool) wrote, not a secret.
_DIGEST_PREFIX = re.compile(r"(?i)(?:sha1|sha224|sha256|sha384|sha512|sha3-256|md5|blake2b|git):$")
_MIN_ENTROPY = 3.5


def looks_like_credential(text: str) -> bool:
    """True when ``text`` is, or holds, something shaped like a credential.

    Args:
        text: any string (a non-string is never a credential).

    Examples:
        >>> looks_like_credential("ghp_" + "a1B2" * 9)
        True
        >>> looks_like_credential("sha256:" + "ab12" * 16)
        False
        >>> looks_like_credential("u-1042"), looks_like_credential("password=hunter2")
        (False, True)
    """
    if not isinstance(text, str) or not text:
        return False
    if not _SUSPECT.search(text):
        return False
    if _OTP.fullmatch(text.strip()):
        return True
    if _ANY_MARKER.search(text):
        for markers, pattern in _KNOWN:
            if any(m in text for m in markers) and pattern.search(text):
                return True
    if _named_secret(text):
        return True
    # One scan for the runs of token characters; recovery codes and tokens are among them.
    for match in _RUN.finditer(text):
        run = match.group(0)
        if "-" in run and any(_is_recovery_code(m.group(0)) for m in _RECOVERY.finditer(run)):
            return True
        if len(run) >= 20 and _is_token(text, match):
            return True
    return False


_DIGITS_ONLY = re.compile(r"[0-9]+")


def ticket_id_looks_like_credential(text: str) -> bool:
    """:func:`looks_like_credential` for a ticket id, which the ticketing system assigns.

    A run of digits is a ticket number there (Zendesk numbers its tickets 1, 2, …
    100000), not a one-time code: nobody types a ticket id in, so it is kept.

    >>> ticket_id_looks_like_credential("100000"), ticket_id_looks_like_credential("ghp_" + "a1B2" * 9)
    (False, True)
    """
    return looks_like_credential(text) and not _DIGITS_ONLY.fullmatch(text)


def not_a_credential_ticket(value: Any) -> Any:
    """:func:`not_a_credential` for a ticket id (a run of digits is a ticket number)."""
    if isinstance(value, str) and ticket_id_looks_like_credential(value):
        return not_a_credential(value)
    return value


def not_a_credential(value: Any) -> Any:
    """A pydantic ``BeforeValidator`` for identifiers a person types in (who, which event,
    which ticket): refuses a credential-shaped value, checked as given (before an
    identifier is case-folded: a folded key id no longer reads as one). The error never
    repeats the value."""
    if isinstance(value, str) and looks_like_credential(value):
        raise PydanticCustomError(
            "credential",
            "looks like a credential (a key, token, password, one-time or recovery code): record who or which "
            "event, never a secret",
        )
    return value


def _named_secret(text: str) -> bool:
    for sign in _SIGN.finditer(text):
        at = sign.start()
        if _ASSIGNED_NAME.search(text, max(0, at - 32), at) and _ASSIGNED_VALUE.match(text, at + 1):
            return True
    if _THREE_DIGITS.search(text):
        lowered = text.lower()
        if any(w in lowered for w in _CODE_WORDS) and _NAMED_CODE.search(text):
            return True
    return False


def _is_recovery_code(code: str) -> bool:
    groups = code.split("-")
    if not any(c.isdigit() for c in code):
        return False
    if groups[0].isascii() and groups[0].isalpha() and groups[0].isupper():
        return False  # an issuer's prefix: CISA-AA23-320A, RITM-…, PROJ-…
    # Letters and digits within a group (7f3k), or digits only (1234-5678-9012).
    # Letter groups next to digit groups are how ticket ids read (RITM-2026-00042).
    return any(_has_letter(g) and _has_digit(g) for g in groups) or all(g.isdigit() for g in groups)


#: Words run together: capitalised words, lower-case words of 3+ letters, acronyms before a word.
_CAMEL_WORDS = re.compile(r"(?:[A-Z]{2,}(?=[A-Z][a-z])|[A-Z][a-z]{2,}|[a-z]{3,})+")


def _is_token(text: str, match: re.Match[str]) -> bool:
    run = match.group(0)
    core = run.strip("-_/+=")
    if len(core) < 20:
        return False
    if _UUID.search(run) and len(_UUID.sub("", run).strip("-_")) < 20:
        return False  # a uuid (a decision id), perhaps with a short prefix
    if _DIGEST_PREFIX.search(text[:match.start()]) and re.fullmatch(r"[0-9a-fA-F]+", core):
        return False  # sha256:<hex>
    # Readable ids and paths are words joined by separators
    # (svc-billing-prod-eu-west-1, 8181/v1/data/helpdesk); a token has few of
    # them, and a long stretch mixing character classes.
    if sum(c in "-_/+" for c in core) * 8 > len(core):
        return False
    if not any(len(chunk) >= 10 and _classes(chunk) >= 2 for chunk in re.split(r"[-_/+=]", core)):
        return False  # words, snake_case codes, numbers
    if all(_CAMEL_WORDS.fullmatch(chunk) for chunk in re.split(r"[-_/+=]", core) if chunk):
        return False  # CamelCase words (FactsUnavailableError, HTTPConnectionPool): a name, not a token
    return _entropy(core) >= _MIN_ENTROPY


def _classes(s: str) -> int:
    """How many of lower case, upper case and digits ``s`` holds."""
    return (any("a" <= c <= "z" for c in s) + any("A" <= c <= "Z" for c in s) + any("0" <= c <= "9" for c in s))


def _has_digit(s: str) -> bool:
    return any("0" <= c <= "9" for c in s)


def _has_letter(s: str) -> bool:
    return any(c.isascii() and c.isalpha() for c in s)


def _entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in Counter(s).values())
