"""Bearer-token authentication for the decision service.

The service accepts one or more static bearer tokens (RFC 6750): several at
once so a token can be rotated without downtime (add the new one, move the
callers over, remove the old one). Tokens come from a file
(``--token-file``, one token a line, ``#`` comments) or from the environment
(``HELPDESK_POLICY_SERVICE_TOKEN``, several separated by commas), never from
the command line, where every user of the host can read them in the process
list.

Comparison is constant-time: the SHA-256 digests of the presented token and
of every accepted token are compared with :func:`hmac.compare_digest`, all of
them every time, so neither the position of the first wrong character nor the
length of a token, nor which token matched, shows in the time taken. No
token value is ever logged or put in an error message (OWASP NHI Top 10:
NHI2 secret leakage; NIST SP 800-63B-4 on verifier secrets).

>>> tokens = BearerTokens(["s3cr3t-token-for-tests-0001"])
>>> tokens.check("Bearer s3cr3t-token-for-tests-0001")
'ok'
>>> tokens.check("Bearer wrong-token-0000000000000")
'invalid'
>>> tokens.check(None)
'missing'
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from ..errors import FieldError, InvalidConfigError
from ..loading import read_text

__all__ = ["BearerTokens", "load_tokens", "TOKEN_ENV", "MIN_TOKEN_LENGTH"]

log = logging.getLogger(__name__)

#: The environment variable holding the accepted token(s), comma-separated.
TOKEN_ENV = "HELPDESK_POLICY_SERVICE_TOKEN"

#: The shortest token accepted: 16 characters of a random base64 token carry
#: 96 bits; a shorter one is a password someone typed.
MIN_TOKEN_LENGTH = 16

#: RFC 6750 ``b64token``: what a bearer token may be made of.
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")

CheckResult = Literal["ok", "missing", "invalid"]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class BearerTokens:
    """The accepted bearer tokens, kept only as SHA-256 digests.

    Args:
        tokens: the accepted tokens (at least one).

    Raises:
        InvalidConfigError: no token, or a token that is not an RFC 6750
            ``b64token`` of at least :data:`MIN_TOKEN_LENGTH` characters
            (named by position, ``token[1]``, never by value).
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        tokens = list(tokens)
        problems = _token_problems(tokens)
        if problems:
            raise InvalidConfigError(problems)
        self._digests: tuple[bytes, ...] = tuple(dict.fromkeys(_digest(t) for t in tokens))

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"<BearerTokens: {len(self)} accepted>"

    def check(self, authorization: str | None) -> CheckResult:
        """Check an ``Authorization`` header value.

        Returns:
            ``"ok"``, ``"missing"`` (no header, or not a bearer one) or
            ``"invalid"`` (a bearer token that is not accepted).
        """
        if not authorization:
            return "missing"
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return "missing"
        presented = _digest(credentials.strip())
        matched = False
        for accepted in self._digests:
            # Every digest is compared, so the time taken does not say which matched.
            matched |= hmac.compare_digest(presented, accepted)
        return "ok" if matched else "invalid"


def _token_problems(tokens: Sequence[str]) -> list[FieldError]:
    if not tokens:
        return [FieldError("token", "at least one bearer token is needed "
                                    f"(--token-file or ${TOKEN_ENV})")]
    problems = []
    for i, token in enumerate(tokens):
        where = "token" if len(tokens) == 1 else f"token[{i}]"
        if not isinstance(token, str):
            problems.append(FieldError(where, "must be a string"))
        elif len(token) < MIN_TOKEN_LENGTH:
            problems.append(FieldError(where, f"is shorter than {MIN_TOKEN_LENGTH} characters: "
                                              "use a random token, e.g. `python -c 'import secrets; "
                                              "print(secrets.token_urlsafe(32))'`"))
        elif not _B64TOKEN.match(token):
            problems.append(FieldError(where, "may hold only letters, digits and - . _ ~ + / "
                                              "(an RFC 6750 bearer token)"))
    return problems


def load_tokens(token_file: str | Path | None = None, *,
                environ: Mapping[str, str] | None = None) -> list[str]:
    """The accepted tokens: from ``token_file`` when given, else from :data:`TOKEN_ENV`.

    A token file holds one token a line; blank lines and lines starting with
    ``#`` are skipped. A file that others than its owner can read is used,
    with a warning (``chmod 600`` it). The variable holds one token, or
    several separated by commas.

    Returns:
        The tokens, possibly none (the caller decides whether that is an error).

    Raises:
        InvalidConfigError: the file cannot be read (named, with why).
    """
    if token_file is not None:
        path = Path(token_file)
        try:
            text = read_text(path)
        except Exception as exc:  # noqa: BLE001 - DocumentError: unreadable or not UTF-8
            raise InvalidConfigError([FieldError("token_file", str(exc))]) from None
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("token file %s is readable by others than its owner: chmod 600 it", path)
        return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    env = os.environ if environ is None else environ
    return [part.strip() for part in env.get(TOKEN_ENV, "").split(",") if part.strip()]
