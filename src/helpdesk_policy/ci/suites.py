"""Expectation suites: named requests and what their decision must say.

A suite is a YAML (or JSON) file that security teams keep beside their
policies (``policies/tests/*.yaml``) and that ``helpdesk-policy test`` runs::

    suite: recovery
    description: Credential and factor recovery.
    base_request:            # optional: deep-merged under every case's request
      request: {id: T-1, action: password_reset, channel: self_service_portal}
      actor: {id: u-1, type: human, relationship: self, authenticated: true, auth_strength: mfa}
      target: {id: u-1, type: human, privileged: false, privilege_tier: 0, vip: false, status: active}
    cases:
      - name: privileged account recovery by phone needs a callback
        request:             # only what differs from base_request
          request: {action: mfa_reset, channel: phone}
          target: {privileged: true, privilege_tier: 2}
        expect:
          level: callback
          allowed: true
          reasons: [privileged_remote_recovery]          # must be present
          reasons_absent: [unrelated_requester]          # must not be present
          obligations: [{code: revoke_previous_credential, within_hours: 24}, terminate_sessions]
          obligations_absent: [time_bound_access]
      - name: from a file
        request_file: requests/phone-reset.json          # relative to the suite file
        expect: {level: step_up}
      - name: guidance sets a floor and a ceiling, not one level
        refs: [CISA-AA23-320A]                           # what the case rests on
        why: an impersonable channel, but a factor still enrolled    # optional
        request: {request: {action: mfa_reset, channel: phone}}
        expect:
          level_at_least: step_up                        # both inclusive; either alone
          level_at_most: manager_approval

In a suite an obligation entry may also pin ``to`` (whom a notification goes
to), and ``constraints`` checks who may approve and whom to call back
(:class:`SuiteExpectation`)::

        expect:
          level: manager_approval
          obligations: [{code: notify_identity_owner, to: holder}]
          constraints:
            approver: {of_record: manager, ids: [u-200], exclude: [u-100]}

Every expectation is optional but a case must state at least one. ``level``
pins the level; ``level_at_least`` / ``level_at_most`` (alone or together, not
with ``level``) accept a range of the ladder instead. Reason and obligation
entries are codes, or mappings that also pin a reason's ``level`` or an
obligation's ``within_hours`` / ``fields``: the expectation model of
:mod:`helpdesk_policy.expectations`, which users' own tests share. ``refs``
(optional, non-empty when present) cites the guidance a case rests on, and
``why`` (optional) says in a sentence why the expectation is what it is. Files
are read strictly (:mod:`helpdesk_policy.loading`: a duplicated key is an
error, never "last one wins") and validated by pydantic models that forbid
unknown keys, and requests by the request model, so a typo fails the load
with an error naming the file, the case and the field. A directory
contributes its ``*.yaml``/``*.yml`` files, subdirectories included
(``tests/guidance/*.yaml``).

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.ci.suites import load_suites, run_suite, stock_suite_paths
>>> suites = load_suites(stock_suite_paths())
>>> policy = HelpdeskPolicy(engine="native")
>>> all(r.passed for s in suites for r in run_suite(policy, s))
True
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import (
    DocumentError,
    FieldError,
    HelpdeskPolicyError,
    InvalidRequestError,
    SuiteError,
)
from ..expectations import Expectation, ObligationExpectation, check_decision, describe_decision
from ..loading import load_document
from ..models import Decision, Request, parse_request
from ..resources import stock_policy_dir

if TYPE_CHECKING:
    from ..facade import HelpdeskPolicy

__all__ = [
    "SUITE_SUFFIXES",
    "Case",
    "CaseResult",
    "Suite",
    "SuiteCase",
    "SuiteError",
    "SuiteExpectation",
    "check_case",
    "SuiteFile",
    "files_under",
    "find_suite_files",
    "labelled_suite_files",
    "load_suite",
    "load_suites",
    "run_suite",
    "run_suites",
    "stock_suite_paths",
]

#: File suffixes a suite may have. A directory contributes only YAML files,
#: because JSON files beside suites are usually requests (``request_file``).
SUITE_SUFFIXES = (".yaml", ".yml", ".json")
_DIR_SUFFIXES = (".yaml", ".yml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteObligationExpectation(ObligationExpectation):
    """An obligation that must be present; in a suite it may also pin ``to``
    (whom a notification goes to: ``holder``, ``owners``, the NHI-governance contact)."""

    to: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class ApproverExpectation(_Strict):
    """What the approver constraint must say (unset fields are not checked)."""

    of_record: Literal["manager", "owner", "application_admin"] | None = None
    ids: list[str] | None = None
    """The approvers of record (compared as a set); give ``ids_unknown: true`` for ``null``."""
    ids_unknown: bool | None = None
    """``true``: ``ids`` must be ``null`` (look the approvers up); ``false``: they must be known."""
    exclude: list[str] | None = None
    """Compared as a set."""

    @model_validator(mode="after")
    def _ids(self) -> ApproverExpectation:
        if self.ids is not None and self.ids_unknown:
            raise ValueError("give ids or ids_unknown: true, not both")
        return self


class CallbackExpectation(_Strict):
    """What the callback constraint must say (unset fields are not checked)."""

    to: Literal["holder", "owners"] | None = None
    ids: list[str] | None = None
    """Compared as a set."""
    min_contact_age_days: Annotated[int, Field(ge=0)] | None = None
    contact_age_days: Annotated[int, Field(ge=0)] | None = None
    contact_usable: bool | None = None
    not_the_recovered_factor: bool | None = None


class ConstraintsExpectation(_Strict):
    """The constraints that must be present, each with the fields given."""

    approver: ApproverExpectation | None = None
    callback: CallbackExpectation | None = None


class SuiteExpectation(Expectation):
    """A suite case's expectation: :class:`~helpdesk_policy.expectations.Expectation`,
    plus an obligation's ``to`` and the decision's ``constraints``::

        expect:
          level: manager_approval
          obligations: [{code: notify_identity_owner, to: holder}]
          constraints:
            approver: {of_record: manager, ids: [u-200], exclude: [u-100]}
    """

    obligations: list[SuiteObligationExpectation] = Field(default_factory=list)  # type: ignore[assignment]
    constraints: ConstraintsExpectation | None = None

    @model_validator(mode="after")
    def _meaningful(self) -> SuiteExpectation:
        # Expectation refuses an expectation that checks nothing; constraints
        # alone check something. (Same name: it replaces the inherited validator.)
        nothing_else = (self.level is None and self.level_range is None and self.allowed is None
                        and not self.reasons and not self.reasons_absent and not self.obligations
                        and not self.obligations_absent)
        if self.constraints is not None and nothing_else:
            return self
        return _EXPECTATION_CHECKS(self)  # type: ignore[no-any-return]


#: Expectation's own consistency checks (what SuiteExpectation._meaningful defers to).
_EXPECTATION_CHECKS = Expectation.__pydantic_decorators__.model_validators["_meaningful"].func


def check_case(decision: Decision, expect: Expectation) -> list[str]:
    """:func:`~helpdesk_policy.expectations.check_decision`, plus what a
    :class:`SuiteExpectation` adds (an obligation's ``to``, the constraints)."""
    out = check_decision(decision, expect)
    if not isinstance(expect, SuiteExpectation):
        return out
    actual_obligations = {o.code: o for o in decision.obligations}
    for ospec in expect.obligations:
        actual = actual_obligations.get(ospec.code)
        if actual is not None and ospec.to is not None and actual.to != ospec.to:
            out.append(f"obligation {ospec.code}: expected to={ospec.to}, got {actual.to}")
    if expect.constraints is not None:
        out += _constraint_mismatches(decision, expect.constraints)
    return out


def _constraint_mismatches(decision: Decision, spec: ConstraintsExpectation) -> list[str]:
    out: list[str] = []
    have = decision.constraints
    for name in ("approver", "callback"):
        want = getattr(spec, name)
        if want is None:
            continue
        actual = None if have is None else getattr(have, name)
        if actual is None:
            out.append(f"constraint missing: {name}")
            continue
        for field, value in want.model_dump(exclude_none=True).items():
            if field == "ids_unknown":
                if value != (actual.ids is None):
                    out.append(f"constraint {name}.ids: expected {'null' if value else 'known ids'}, got {actual.ids}")
                continue
            got = getattr(actual, field)
            same = sorted(got) == sorted(value) if isinstance(value, list) and got is not None else got == value
            if not same:
                out.append(f"constraint {name}.{field}: expected {value!r}, got {got!r}")
    return out


class SuiteCase(_Strict):
    """One case as written in a suite file."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    refs: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(min_length=1)] | None = None
    """The guidance the case rests on (``CISA-AA23-320A``); when given, at least one."""
    why: Annotated[str, Field(min_length=1, max_length=4000)] | None = None
    """Why the expectation is what it is (the guidance read, a decision taken on purpose)."""
    request: dict[str, Any] | None = None
    request_file: Annotated[str, Field(min_length=1)] | None = None
    expect: SuiteExpectation

    @model_validator(mode="after")
    def _one_request(self) -> SuiteCase:
        if self.request_file is not None and self.request is not None:
            raise ValueError("give either request or request_file, not both")
        return self


class SuiteFile(_Strict):
    """A suite file as written: ``suite``, ``description``, ``base_request``, ``cases``."""

    suite: Annotated[str, Field(min_length=1, max_length=200)]
    description: str | None = None
    base_request: dict[str, Any] | None = None
    cases: list[SuiteCase] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> SuiteFile:
        seen: set[str] = set()
        dupes = [c.name for c in self.cases if c.name in seen or seen.add(c.name)]  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"case names must be unique; repeated: {sorted(set(dupes))}")
        return self


@dataclass(frozen=True)
class Case:
    """A loaded case: its validated request and expectation."""

    name: str
    request: Request
    expect: Expectation
    index: int
    description: str | None = None
    request_file: Path | None = None
    refs: tuple[str, ...] = ()
    why: str | None = None


@dataclass(frozen=True)
class Suite:
    """A loaded, validated suite."""

    name: str
    cases: tuple[Case, ...]
    path: Path | None = None
    description: str | None = None
    display: str | None = None
    """How reports name the file (``guidance/x.yaml`` for one found in a subdirectory)."""

    @property
    def label(self) -> str:
        """``display``, else the file name (or the suite name for a suite built in code)."""
        if self.display is not None:
            return self.display
        return self.path.name if self.path is not None else self.name


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case: ``passed`` and, when not, the mismatches."""

    suite: str
    case: str
    file: str | None
    passed: bool
    mismatches: tuple[str, ...] = ()
    decision: Decision | None = None
    error: str | None = None
    duration_s: float = 0.0
    expect: Expectation | None = None
    refs: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.file or self.suite}: {self.case}"

    @property
    def range_note(self) -> str | None:
        """``step_up in [step_up, manager_approval]``: the level against a range expectation."""
        if self.decision is None or self.expect is None or self.expect.level_range is None:
            return None
        return f"{self.decision.level.value} in {self.expect.level_text()}"

    def failure_text(self) -> str:
        """Expected vs actual, for a person. Empty for a passing case."""
        if self.passed:
            return ""
        lines = [f"FAIL {self.label}"]
        if self.error is not None:
            lines.append(f"  error: {self.error}")
        lines += [f"  {m}" for m in self.mismatches]
        if self.decision is not None:
            lines += ["  actual decision:", *(f"    {line}" for line in describe_decision(self.decision))]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the decision as level, reason and obligation codes)."""
        doc: dict[str, Any] = {
            "suite": self.suite,
            "file": self.file,
            "case": self.case,
            "passed": self.passed,
            "mismatches": list(self.mismatches),
            "error": self.error,
            "duration_s": round(self.duration_s, 6),
            "expect": self.expect.model_dump(mode="json", exclude_defaults=True) if self.expect else None,
            "refs": list(self.refs),
        }
        if self.decision is not None:
            doc["decision"] = {
                "level": self.decision.level.value,
                "allowed": self.decision.allowed,
                "reasons": [r.code for r in self.decision.reasons],
                "obligations": [o.code for o in self.decision.obligations],
            }
        return doc


# ----------------------------------------------------------------------- loading


def _read_document(path: Path) -> Any:
    """A suite or request file, read strictly (duplicate keys, bad encoding: errors naming file and line)."""
    try:
        return load_document(path)
    except DocumentError as exc:
        where = f"{exc.source}: line {exc.line}" if exc.line is not None else exc.source
        raise SuiteError([FieldError(where, exc.detail)]) from None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` onto ``base``: mappings merge, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _loc_label(raw: Any, loc: Sequence[Any]) -> str:
    """``cases[3] 'name'.expect.level`` from a pydantic location, naming the case."""
    parts: list[str] = []
    i = 0
    while i < len(loc):
        item = loc[i]
        if item == "cases" and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            idx = loc[i + 1]
            name = _case_name(raw, idx)
            parts.append(f"cases[{idx}]" + (f" {name!r}" if name else ""))
            i += 2
            continue
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
        else:
            parts.append(str(item))
        i += 1
    return ".".join(parts) if parts else "(top level)"


def _case_name(raw: Any, index: int) -> str | None:
    try:
        name = raw["cases"][index]["name"]
    except (KeyError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _case_request(p: Path, index: int, raw_case: Mapping[str, Any], base: Any,
                  errors: list[tuple[int, FieldError]]) -> tuple[Request | None, Path | None]:
    """Validate one raw case's request (its ``request_file``, or ``request``
    merged over ``base``), recording problems; works on the raw document so
    request errors are reported even when the case's structure is also wrong."""
    name = raw_case.get("name")
    where = f"{p}: cases[{index}]" + (f" {name!r}" if isinstance(name, str) else "")
    request_file = raw_case.get("request_file")
    request = raw_case.get("request")
    request_path: Path | None = None
    if isinstance(request_file, str) and request_file and request is None:
        request_path = p.parent / request_file
        try:
            doc = _read_document(request_path)
        except SuiteError as exc:
            # The request file's own name (and line) stay in the message: it is another file.
            errors.extend((index, FieldError(f"{where}: request_file", str(e))) for e in exc.errors)
            return None, request_path
        if not isinstance(doc, Mapping):
            errors.append((index, FieldError(f"{where}: request_file", f"{request_file} must hold one request object")))
            return None, request_path
        # A request file is a complete request: base_request is not merged into it.
    elif request_file is not None:
        return None, None  # structural problem, reported by the model validation
    elif isinstance(request, Mapping):
        doc = _merge(base, request) if isinstance(base, Mapping) else dict(request)
    elif request is None and isinstance(base, Mapping):
        doc = dict(base)
    elif request is None:
        errors.append((index, FieldError(where, "needs request or request_file (there is no base_request)")))
        return None, None
    else:
        return None, None  # not a mapping: reported by the model validation
    try:
        return parse_request(doc), request_path
    except InvalidRequestError as exc:
        errors.extend((index, FieldError(f"{where}: request.{e.path}", e.message)) for e in exc.errors)
        return None, request_path


def load_suite(path: str | Path, *, display: str | None = None) -> Suite:
    """Load and validate one suite file (YAML or JSON).

    Base requests are deep-merged under each case's ``request``; a
    ``request_file`` (relative to the suite file) is used as it is.
    ``display`` is how reports name the file (default: its name).

    Raises:
        SuiteError: unreadable, not a suite, or any case invalid; every problem
            (structure and request fields alike) is listed as
            ``<file>: cases[<i>] '<name>'.<field>: <message>``.
    """
    p = Path(path)
    raw = _read_document(p)
    if not isinstance(raw, Mapping):
        raise SuiteError([FieldError(str(p), "must hold a mapping with 'suite' and 'cases'")])
    errors: list[tuple[int, FieldError]] = []
    spec: SuiteFile | None = None
    try:
        spec = SuiteFile.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            loc = err["loc"]
            index = loc[1] if len(loc) > 1 and loc[0] == "cases" and isinstance(loc[1], int) else -1
            errors.append((index, FieldError(f"{p}: {_loc_label(raw, loc)}", err["msg"])))

    raw_cases = raw.get("cases")
    requests: dict[int, tuple[Request | None, Path | None]] = {}
    if isinstance(raw_cases, list):
        for index, raw_case in enumerate(raw_cases):
            if isinstance(raw_case, Mapping):
                requests[index] = _case_request(p, index, raw_case, raw.get("base_request"), errors)
    if errors or spec is None:
        # Stable: by case (file-level problems first), then in the order found.
        ordered = sorted(enumerate(errors), key=lambda t: (t[1][0], t[0]))
        raise SuiteError([e for _, (_, e) in ordered])

    cases = []
    for index, case in enumerate(spec.cases):
        request, request_path = requests[index]
        assert request is not None  # every failure above was recorded as an error
        cases.append(Case(name=case.name, request=request, expect=case.expect, index=index,
                          description=case.description, request_file=request_path, refs=tuple(case.refs or ()),
                          why=case.why))
    return Suite(name=spec.suite, cases=tuple(cases), path=p, description=spec.description, display=display)


def files_under(directory: Path, suffixes: Sequence[str]) -> list[Path]:
    """Regular files with one of ``suffixes`` under ``directory``, subdirectories included,
    sorted by relative path. Hidden files and directories (``.git``, editor
    droppings) are left out; symlinked directories are not followed, so a
    link loop cannot make discovery run forever."""
    found = []
    for f in directory.rglob("*"):
        rel = f.relative_to(directory)
        if f.suffix in suffixes and not any(part.startswith(".") for part in rel.parts) and f.is_file():
            found.append((rel.as_posix(), f))
    return [f for _, f in sorted(found)]


def labelled_suite_files(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """``(file, label)`` for every suite in ``paths``: a directory contributes its
    ``*.yaml``/``*.yml`` files, subdirectories included, labelled by their path
    relative to it (``guidance/x.yaml``); a file is kept as given, labelled by its name.

    Raises:
        SuiteError: a path does not exist.
    """
    out: list[tuple[Path, str]] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            out += [(f, f.relative_to(p).as_posix()) for f in files_under(p, _DIR_SUFFIXES)]
        elif p.is_file():
            out.append((p, p.name))
        else:
            raise SuiteError([FieldError(str(p), "no such file or directory")])
    return out


def find_suite_files(paths: Iterable[str | Path]) -> list[Path]:
    """The suite files in ``paths`` (see :func:`labelled_suite_files`), without their labels.

    Raises:
        SuiteError: a path does not exist.
    """
    return [p for p, _ in labelled_suite_files(paths)]


def load_suites(paths: Iterable[str | Path]) -> list[Suite]:
    """Load every suite in ``paths`` (files, or directories of ``*.yaml``).

    All files are validated before any error is raised, so one run reports
    every problem in every file.

    Raises:
        SuiteError: listing the problems of every invalid file.
    """
    suites: list[Suite] = []
    errors: list[FieldError] = []
    for p, label in labelled_suite_files(paths):
        try:
            suites.append(load_suite(p, display=label))
        except SuiteError as exc:
            errors.extend(exc.errors)
    if errors:
        raise SuiteError(errors)
    return suites


def stock_suite_paths() -> list[Path]:
    """The suites shipped with the stock policies (``policies/tests/*.yaml``)."""
    return find_suite_files([stock_policy_dir() / "tests"])


# ---------------------------------------------------------------------- running


def run_suite(policy: HelpdeskPolicy, suite: Suite, *, allow_degraded: bool = False) -> list[CaseResult]:
    """Decide every case of ``suite`` with ``policy`` and check its expectation.

    A degraded decision (an engine failed, so the facade fell back or failed
    closed) fails the case unless ``allow_degraded``: it does not show what the
    policy under test decides, and a fail-closed ``callback`` could make a case
    pass by accident.
    """
    results: list[CaseResult] = []
    for case in suite.cases:
        start = time.perf_counter()
        try:
            decision = policy.decide(case.request)
        except HelpdeskPolicyError as exc:
            results.append(CaseResult(suite.name, case.name, suite.label, False, (), None,
                                      f"{type(exc).__name__}: {exc}", time.perf_counter() - start,
                                      case.expect, case.refs))
            continue
        elapsed = time.perf_counter() - start
        mismatches = check_case(decision, case.expect)
        if decision.degraded and not allow_degraded:
            mismatches.insert(0, f"decision is degraded (engine {decision.engine!r} answered, not "
                                 f"{policy.engine_names[0]!r}): the policy under test did not decide")
        results.append(CaseResult(suite.name, case.name, suite.label, not mismatches, tuple(mismatches),
                                  decision, None, elapsed, case.expect, case.refs))
    return results


def run_suites(policy: HelpdeskPolicy, suites: Iterable[Suite], *, allow_degraded: bool = False) -> list[CaseResult]:
    """:func:`run_suite` over several suites, results in order."""
    return [r for s in suites for r in run_suite(policy, s, allow_degraded=allow_degraded)]

