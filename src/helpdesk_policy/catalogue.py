"""The reason catalogue: how every reason of the stock policy reads, as data.

A decision's reasons each carry a machine ``code``, a sentence for a person
and framework ``refs``. The sentences and refs live in one file,
``policies/reasons.yaml``, which the Rego reads as ``data.helpdesk.catalogue``
and the native engine reads too: a message is written once, and an
organisation may reword or translate its copy without touching a rule (same
placeholders, same order). The rules decide *whether* a reason applies and at
which level; the catalogue only says how it reads.

Each entry's ``message`` is a ``sprintf`` template whose ``%v`` placeholders
take the entry's ``args`` in order. Messages, refs and signal sentences are
printable ASCII without ``"`` and ``\\``: rego-cpp keeps strings it reads from
data in their escaped JSON form, so any other character would print
differently on the embedded engine than on OPA (see the README, "Rego that
rego-cpp and OPA read differently").

>>> from helpdesk_policy.catalogue import load_catalogue
>>> cat = load_catalogue()
>>> cat.reasons["weak_authentication"].render(["password", "mfa"])
'The requester authenticated with password; mfa or stronger is needed to act without a step-up.'
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .config import read_mapping_file
from .errors import FieldError, InvalidConfigError, field_errors_from_pydantic
from .models import RiskSignal, cross_field_error
from .resources import stock_policy_dir

__all__ = ["CatalogueEntry", "ReasonCatalogue", "load_catalogue", "CATALOGUE_FILE", "STOCK_KEYS"]

CATALOGUE_FILE = "reasons.yaml"

_PLACEHOLDER = "%v"
_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")
_CODE = re.compile(r"^[a-z][a-z0-9_]*(%v)?$")


def _data_text(value: str) -> str:
    # See the module docstring: what every engine prints alike.
    if not value.isascii() or not value.isprintable() or '"' in value or "\\" in value:
        raise PydanticCustomError(
            "catalogue_text", "must hold printable ASCII characters other than '\"' and '\\\\' (read alike by every engine)"
        )
    if "%" in value.replace(_PLACEHOLDER, ""):
        raise PydanticCustomError("catalogue_text", "may use no '%' other than the %v placeholder")
    return value


DataText = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_data_text)]


class CatalogueEntry(BaseModel):
    """How one reason reads: its code, a message template and its refs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The reason's machine code. ``risk_%v`` takes the risk signal's name.
    code: Annotated[str, Field(pattern=_CODE.pattern, max_length=64)]
    #: What the ``%v`` placeholders stand for, in order (documentation, and the count).
    args: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]] = Field(default_factory=list)
    message: DataText
    refs: list[Annotated[str, Field(max_length=128), AfterValidator(_data_text)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _placeholders(self) -> CatalogueEntry:
        found = self.message.count(_PLACEHOLDER)
        if found != len(self.args):
            raise PydanticCustomError(
                "catalogue_args", f"message has {found} %v placeholder(s) but args names {len(self.args)}"
            )
        return self

    def render(self, args: Sequence[str | int]) -> str:
        """The message with ``args`` in place, as Rego's ``sprintf("%v")`` prints them.

        Only strings and integers are ever passed: a string prints as itself,
        an integer as its digits (floats would print differently per engine).
        """
        if len(args) != len(self.args):
            raise ValueError(f"{len(self.args)} argument(s) expected, got {len(args)}")
        parts = self.message.split(_PLACEHOLDER)
        out = [parts[0]]
        for value, tail in zip(args, parts[1:]):
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise TypeError(f"catalogue arguments are strings or integers, not {type(value).__name__}")
            out.append(str(value))
            out.append(tail)
        return "".join(out)

    def reason_code(self, signal: str | None = None) -> str:
        """The code, with the risk signal's name in place of ``%v`` where it has one."""
        if _PLACEHOLDER in self.code:
            if signal is None:
                raise ValueError(f"code {self.code!r} needs a signal")
            return self.code.replace(_PLACEHOLDER, signal)
        return self.code


class ReasonCatalogue(BaseModel):
    """Every reason's message and refs, plus one sentence per risk signal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reasons: dict[Annotated[str, Field(pattern=_KEY.pattern, max_length=96)], CatalogueEntry]
    signals: dict[RiskSignal, DataText]

    @model_validator(mode="after")
    def _complete(self) -> ReasonCatalogue:
        problems: list[tuple[str, str]] = []
        missing = sorted(STOCK_KEYS - set(self.reasons))
        if missing:
            problems.append(("reasons", f"missing entries the stock policy uses: {missing}"))
        unsaid = sorted(s.value for s in RiskSignal if s not in self.signals)
        if unsaid:
            problems.append(("signals", f"missing sentences for risk signals {unsaid}"))
        if problems:
            raise cross_field_error(type(self).__name__, problems)
        return self

    def to_data(self) -> dict[str, Any]:
        """The document Rego reads as ``data.helpdesk.catalogue``."""
        return self.model_dump(mode="json")

    def canonical_json(self) -> str:
        """Stable JSON used for the policy revision digest."""
        return json.dumps(self.to_data(), sort_keys=True, separators=(",", ":"))


@functools.cache
def _stock_document() -> Mapping[str, Any]:
    # Package data: read and parsed once per process, for STOCK_KEYS and every
    # load_catalogue() (each PolicySet loads one). Never mutated: merging copies.
    return read_mapping_file(stock_policy_dir() / CATALOGUE_FILE)


#: Every entry the stock rules read (a catalogue missing one is refused, so a
#: reworded copy cannot silently drop a reason).
STOCK_KEYS: frozenset[str] = frozenset(_stock_document()["reasons"])


def load_catalogue(source: ReasonCatalogue | Mapping[str, Any] | str | Path | None = None) -> ReasonCatalogue:
    """Load the reason catalogue: the stock file, or a file or mapping merged over it entry by entry.

    Raises:
        InvalidConfigError: every problem, each under its key (prefixed with
            the file name when the catalogue came from a file).
    """
    if isinstance(source, ReasonCatalogue):
        return source
    stock = _stock_document()
    name: str | None = None
    if source is None:
        override: Mapping[str, Any] = {}
    elif isinstance(source, str | Path):
        override, name = read_mapping_file(Path(source)), str(source)
    else:
        override = source
    merged = {
        "reasons": {**stock.get("reasons", {}), **dict(override.get("reasons") or {})},
        "signals": {**stock.get("signals", {}), **dict(override.get("signals") or {})},
    }
    extra = sorted(set(override) - {"reasons", "signals"})
    try:
        if extra:
            raise InvalidConfigError([FieldError(k, "unknown key (expected reasons, signals)") for k in extra])
        return ReasonCatalogue.model_validate(merged)
    except ValidationError as exc:
        errors = list(field_errors_from_pydantic(exc, model=ReasonCatalogue))
    except InvalidConfigError as exc:
        errors = list(exc.errors)
    if name is not None:
        errors = [FieldError(f"{name}: {e.path}", e.message) for e in errors]
    raise InvalidConfigError(errors)


