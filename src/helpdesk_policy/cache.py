"""The decision cache: what the engines answered, kept per policy revision and input digest.

A helpdesk decides one ticket several times (when it is opened, updated,
and again before it is closed), and with a deterministic policy the same
request under the same policy revision always gets the same verdict. The
cache keeps the engines' verdict under the key ``(policy revision, input
digest)`` — the revision covers the Rego files, the config and the reason
catalogue; the digest is the sha256 of the validated request's canonical JSON
(:func:`~helpdesk_policy.models.input_digest`) — so asking again skips the
engines (about 2 ms for the embedded Rego).

What it keeps, and what it never does:

* Only the **engine verdict** of a decision the **first** engine of the
  chain made. A degraded answer (a fallback engine's) and the fail-closed
  strict answer are never kept: an outage must not outlive itself, and the
  engine that should decide is asked again next time.
* Never a decision: each decision still gets a fresh ``decision_id`` and
  its own decision-log record, and the policy exceptions (which depend on
  the time and on the exception store) are applied after the cache, on
  every decision.
* It is bounded (least recently used entries go first), thread-safe, and
  counts its hits and misses (:class:`CacheInfo`).

It is sound only for a policy whose answer depends on the request and the
policy alone: :func:`nondeterministic_calls` finds the Rego builtins that
read the clock, the network, a random source or the running OPA
(:data:`NONDETERMINISTIC_BUILTINS`), and the facade turns the cache off, with
the reason logged, for a policy set that calls any of them.

>>> cache = DecisionCache(2)
>>> cache.get(("rev", "sha256:a")) is None
True
>>> cache.put(("rev", "sha256:a"), "verdict")
>>> cache.get(("rev", "sha256:a"))
'verdict'
>>> cache.info()
CacheInfo(hits=1, misses=1, maxsize=2, currsize=1, enabled=True, reason=None)
>>> nondeterministic_calls({"a.rego": "package a\\n\\n# time.now_ns() in a comment is fine\\nt := time.now_ns()\\n"})
['a.rego:4: time.now_ns']
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "DecisionCache",
    "CacheInfo",
    "DEFAULT_CACHE_SIZE",
    "NONDETERMINISTIC_BUILTINS",
    "nondeterministic_calls",
]

#: Entries kept by default: a few thousand verdicts, a few MB at most.
DEFAULT_CACHE_SIZE = 4096

#: Rego builtins whose answer is not a function of the input and the policy
#: (the ones OPA marks non-deterministic, and every ``time.``, ``rand.`` and
#: ``uuid.`` builtin): a policy calling one is never cached. A name ending
#: in ``.*`` stands for every builtin under it.
NONDETERMINISTIC_BUILTINS: tuple[str, ...] = (
    "time.*",
    "rand.*",
    "uuid.*",
    "http.send",
    "opa.runtime",
    "net.lookup_ip_addr",
    "io.jwt.decode_verify",
    "io.jwt.encode_sign",
    "io.jwt.encode_sign_raw",
    "crypto.x509.parse_and_verify_certificates",
    "crypto.x509.parse_and_verify_certificates_with_options",
)

_PREFIXES = tuple(name[:-1] for name in NONDETERMINISTIC_BUILTINS if name.endswith(".*"))
_EXACT = frozenset(name for name in NONDETERMINISTIC_BUILTINS if not name.endswith(".*"))
_ROOTS = sorted({name.split(".")[0] for name in NONDETERMINISTIC_BUILTINS})

# A cheap first look at the raw text: most policies name none of the roots.
_MAYBE = re.compile(r"\b(?:%s)\s*\." % "|".join(_ROOTS))
# Strings, raw strings and comments: what a builtin's name may appear in without being called.
_NOT_CODE = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|#[^\n]*')
# A ref that does not continue another one (``input.time.x`` is not ``time.x``).
_REF = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)+")


class CacheInfo(NamedTuple):
    """What a :class:`DecisionCache` did, as :func:`functools.lru_cache`'s ``cache_info()`` says it."""

    #: Decisions answered from the cache.
    hits: int
    #: Lookups that found nothing (the engines were asked).
    misses: int
    #: The most entries kept (0: the cache is off).
    maxsize: int
    #: Entries kept now.
    currsize: int
    #: Whether decisions are looked up at all.
    enabled: bool
    #: Why the cache is off (``None`` when it is on).
    reason: str | None


class DecisionCache:
    """A bounded, thread-safe LRU map from a decision key to what the engines answered.

    Args:
        maxsize: the most entries kept; ``0`` turns the cache off.
        disabled_reason: why the cache is off although ``maxsize`` is not 0
            (a non-deterministic policy); ``None``: it is on.

    Raises:
        ValueError: ``maxsize`` is not a whole number of at least 0.
    """

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE, *, disabled_reason: str | None = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError("maxsize must be a whole number of at least 0 (0 turns the cache off)")
        self.maxsize = maxsize
        if maxsize == 0 and disabled_reason is None:
            disabled_reason = "cache_size is 0"
        #: Why the cache is off, or ``None``.
        self.disabled_reason = disabled_reason
        #: Whether :meth:`get` and :meth:`put` do anything (read it, do not set it).
        self.enabled = disabled_reason is None
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: Hashable) -> Any:
        """The entry under ``key`` (now the most recently used), or ``None``; counts a hit or a miss."""
        if not self.enabled:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self._misses += 1
            else:
                self._entries.move_to_end(key)
                self._hits += 1
            return found

    def put(self, key: Hashable, value: Any) -> None:
        """Keep ``value`` under ``key``, dropping the least recently used entry when full."""
        if not self.enabled or value is None:
            return
        with self._lock:
            entries = self._entries
            entries[key] = value
            entries.move_to_end(key)
            while len(entries) > self.maxsize:
                entries.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry and reset the counts."""
        with self._lock:
            self._entries.clear()
            self._hits = self._misses = 0

    def info(self) -> CacheInfo:
        """The hit and miss counts, the size and whether the cache is on (and why not)."""
        with self._lock:
            return CacheInfo(self._hits, self._misses, self.maxsize, len(self._entries), self.enabled,
                             self.disabled_reason)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        state = "on" if self.enabled else f"off: {self.disabled_reason}"
        return f"<DecisionCache {len(self._entries)}/{self.maxsize} {state}>"


def nondeterministic_calls(modules: Mapping[str, str]) -> list[str]:
    """Where Rego ``modules`` (file name -> source) call a :data:`NONDETERMINISTIC_BUILTINS` builtin.

    Each as ``file:line: name``, in file order. The check reads the sources
    (strings and comments skipped), not a compiled policy, so it errs only
    towards finding too much: a local variable called ``time`` with a field
    read off it counts, which only turns the cache off.
    """
    found: list[str] = []
    for file, source in modules.items():
        if not _MAYBE.search(source):
            continue
        # Strings and comments blanked out, their line breaks kept (for line numbers).
        code = _NOT_CODE.sub(lambda m: "\n" * m.group(0).count("\n") + " ", source)
        for m in _REF.finditer(code):
            name = re.sub(r"\s+", "", m.group(0))
            if name.startswith(_PREFIXES) or any(name == e or name.startswith(e + ".") for e in _EXACT):
                found.append(f"{file}:{code.count(chr(10), 0, m.start()) + 1}: {name}")
    return found
