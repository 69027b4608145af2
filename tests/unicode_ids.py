"""Requests whose identifier fields hold text from the whole Unicode range.

Shared by the parity (tests/test_parity.py) and monotonicity
(tests/test_properties.py) properties of guarantee 8. A valid request from
``helpdesk_policy.testing`` has its identity identifiers, ticket id,
environment and justification replaced by spellings of a few stems — as
written, upper-cased, fullwidth, wrapped in or cut by any code point
(controls, format characters, surrogates, unassigned ones) — or by any text at
all. Ids spelled from one stem collide once canonical, so ownership and
``self`` are exercised, and a NUL placed after a stem reproduces the
``"u-7\\x00attacker"`` split of rego-cpp.

The relationship is set to ``self`` exactly when the ids are one identity and
the actor is then given the target's kind, so that most examples are valid;
the rest must be refused with InvalidRequestError.
"""

from __future__ import annotations

import copy
import unicodedata
from typing import Any

from hypothesis import strategies as st

from helpdesk_policy.models import canonical_identifier

__all__ = ["ANY_CHAR", "REFUSED", "respelled", "holds_refused_character", "ID_PATHS"]

#: The categories an identifier may not hold (checked here independently of the models).
REFUSED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

#: Any code point, surrogates included (st.characters() alone leaves them out),
#: with the characters that matter most drawn often.
ANY_CHAR = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),
    st.sampled_from(["\x00", "\n", "\r", "\x1b", "\x7f", "\u200b", "\u200d", "\u202e", "\u2066", "\ufeff",
                     "\u00ad", "\u2028", "\ue000", "\uffff", " ", "\u00a0", "\u3000", "\u00a8", "\ufdfa"]),
)

_STEMS = ("u-7", "agent-7", "key-1", "svc-1")
_ENVIRONMENTS = ("production", "prod", "dev")

#: The request fields this module rewrites (list fields end in "[]").
ID_PATHS = ("actor.id", "target.id", "target.owners[]", "actor.on_behalf_of", "actor.roles[]", "request.id",
            "target.environment")


def _fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def _spelling(stem: str) -> st.SearchStrategy[str]:
    junk = st.text(ANY_CHAR, max_size=3)
    return st.one_of(
        st.just(stem),
        st.sampled_from([stem.upper(), stem.title(), _fullwidth(stem), _fullwidth(stem.upper())]),
        st.tuples(junk, st.just(stem), junk).map("".join),
        st.tuples(st.just(stem), st.sampled_from(["\x00", "\u200b", " ", "\n"]), st.text(ANY_CHAR, min_size=1, max_size=8))
        .map("".join),
        st.text(ANY_CHAR, min_size=1, max_size=10),
    )


def _same(a: str, b: str) -> bool:
    try:
        return canonical_identifier(a) == canonical_identifier(b)
    except (ValueError, TypeError):  # e.g. a lone surrogate: refused by the model anyway
        return a == b


_SELF_ACTOR = {"human": "human", "ai_agent": "ai_agent"}


@st.composite
def respelled(draw: Any, base: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A request dict from ``base`` with its identifier fields respelled (see the module docstring)."""
    doc = copy.deepcopy(draw(base, label="valid request"))
    stem = draw(st.sampled_from(_STEMS), label="stem")
    spell = _spelling(stem)
    actor, target, info = doc["actor"], doc["target"], doc["request"]
    target["id"] = draw(st.one_of(spell, _spelling(draw(st.sampled_from(_STEMS)))), label="target.id")
    actor["id"] = draw(spell, label="actor.id")
    target["owners"] = draw(st.lists(spell, max_size=3), label="target.owners")
    actor["on_behalf_of"] = draw(st.one_of(st.none(), spell), label="actor.on_behalf_of")
    actor["roles"] = draw(st.lists(st.one_of(st.just("employee"), spell), max_size=2), label="actor.roles")
    info["id"] = draw(st.one_of(st.just(info["id"]), _spelling("INC-1")), label="request.id")
    if target["environment"] is not None:
        target["environment"] = draw(_spelling(draw(st.sampled_from(_ENVIRONMENTS))), label="target.environment")
    info["justification"] = draw(st.one_of(st.none(), st.text(ANY_CHAR, max_size=40)), label="justification")
    if _same(actor["id"], target["id"]):
        actor["relationship"] = "self"
        actor["type"] = _SELF_ACTOR.get(target["type"], "service")
    elif actor["relationship"] == "self":
        actor["relationship"] = draw(st.sampled_from(["owner", "helpdesk_agent", "other"]), label="relationship")
    return doc


def holds_refused_character(doc: dict[str, Any]) -> bool:
    """Whether any identifier field of ``doc`` holds a character no identifier may hold."""
    for path in ID_PATHS:
        section, name = path.rstrip("[]").split(".")
        value = doc[section][name]
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and any(unicodedata.category(ch) in REFUSED for ch in text):
                return True
    return False
