"""Decision diff between two versions of a policy: what a change makes stricter or looser.

Security teams change policies through pull requests. Before merging they need
to see which decisions the change affects. :func:`diff_policies` evaluates the
same cases under a *base* and a *head* policy set (each with its own
``config.yaml``) with the ``rego`` engine and classifies every case:

===================  ==========================================================
``looser``           the head's level is lower on the ladder (a ``deny`` that
                     became allowed is the extreme case); or, at the same
                     level, an obligation was dropped or weakened (a
                     ``within_hours`` deadline lengthened, a list parameter
                     such as the evidence ``fields`` lost an item): "revoke
                     the old key" silently disappearing is a loosening too
``stricter``         the head's level is higher; or, at the same level and
                     reasons, obligations were only added or strengthened
``reasons``          same level, but reason codes were added or removed, a
                     reason now demands a different level (a loosening hidden
                     behind another reason shows up here), or a reason kept its
                     code and got another message (what the agent reads)
``playbook``         same level and reasons, another playbook (a playbook for
                     a lower level is ``looser``; validation refuses one at a
                     decision's own level, so this is a rename)
``obligations``      same level and reasons, obligation parameters changed in
                     a way that is neither clearly weaker nor stronger
``constraints``      same level and reasons, the ``constraints`` (who may
                     approve, where the callback goes) changed in a way that
                     is neither clearly weaker nor stronger. A constraint
                     dropped, a shorter minimum contact age, a contact now
                     usable, an approver no longer excluded or a callback that
                     may now reach the recovered factor is ``looser``
``unchanged``        same level, reasons (code, level, message), playbook,
                     obligations and constraints
``error``            a version could not decide the case (e.g. the head's Rego
                     is undefined for it)
===================  ==========================================================

Reason *refs* are not compared: citing another framework is not a decision
change. The report counts changes per (action, target type), lists concrete
examples and renders as Markdown for a pull-request comment or JSON for
machines.

The head is also decided by **OPA's Go evaluator** when it is installed
(:mod:`helpdesk_policy.ci.conformance`): the embedded engine (rego-cpp) and the
OPA servers of a fleet must read the changed Rego alike, or the report would
vouch for decisions the fleet does not make. Any disagreement fails the diff.

Cases come from files (:func:`load_cases`: suite YAML, request JSON, arrays,
JSONL, decision logs, read strictly: a duplicated key is an error) and/or
:func:`~helpdesk_policy.ci.generate.generate_requests`. From
:data:`AUTO_MIN_CASES` cases on they are decided on every CPU, by worker
processes and this one (:mod:`helpdesk_policy.replay`); the report is the
same. A policy version is a
directory or ``git:<ref>[:<path>]`` (:func:`resolve_policy_source`; every path
exported from git is checked to stay inside the export directory).

>>> from helpdesk_policy.policyset import PolicySet
>>> from helpdesk_policy.ci.generate import generate_requests
>>> from helpdesk_policy.ci.diff import diff_policies, generated_cases
>>> stock = PolicySet.load()
>>> report = diff_policies(stock, stock, generated_cases(20, seed=1))
>>> report.counts()["unchanged"], report.has_loosening
(20, False)
"""

from __future__ import annotations

import enum
import functools
import json
import os
import posixpath
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..digest import redact
from ..errors import (
    DiffError,
    DocumentError,
    FieldError,
    HelpdeskPolicyError,
    InvalidRequestError,
    PolicyLoadError,
)
from ..levels import Level
from ..loading import load_json, load_yaml, read_text
from ..models import Request, Verdict, parse_request
from ..policyset import PolicySet
from ..replay import ProgressBar, WorkerJob, plan_workers, run_chunks
from ..resources import stock_policy_dir
from .conformance import (
    OPA_GO,
    OPA_INSTALL_HINT,
    Comparison,
    EngineMismatch,
    OpaGoEngine,
    compare_engines,
    conformance_summary,
    opa_go_missing,
    require_opa_go,
    skipped_conformance,
)

__all__ = [
    "AUTO_MIN_CASES",
    "CASE_SUFFIXES",
    "CaseDiff",
    "Change",
    "DiffCase",
    "DiffError",
    "DiffReport",
    "Outcome",
    "VersionInfo",
    "compare",
    "default_git_path",
    "diff_policies",
    "export_git_policy_dir",
    "generated_cases",
    "git_toplevel",
    "load_cases",
    "parse_git_spec",
    "RECORDED",
    "recorded_outcome",
    "playbook_level",
    "resolve_policy_source",
    "summarise_request",
]

#: File suffixes :func:`load_cases` reads (a directory contributes these, sorted).
CASE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".yaml", ".yml")

#: ``workers=None``: every CPU from this many cases on (a case costs a few
#: milliseconds of rego-cpp per version, a worker about half a second to start).
AUTO_MIN_CASES = 1000
#: Cases per chunk handed to a worker process: a fraction of a second of work.
_CHUNK = 25

#: ``"auto"``: check the head against OPA's Go evaluator when it is installed,
#: ``"require"``: fail when it is not, ``"off"``: do not check.
OpaCheck = Literal["auto", "require", "off"]


class Change(str, enum.Enum):
    """How a case's decision changed from base to head, most important first."""

    ERROR = "error"
    LOOSER = "looser"
    STRICTER = "stricter"
    REASONS = "reasons"
    PLAYBOOK = "playbook"
    OBLIGATIONS = "obligations"
    CONSTRAINTS = "constraints"
    UNCHANGED = "unchanged"


# ------------------------------------------------------------------------ cases


#: ``--base recorded``: the base is what the decision logs say was decided.
RECORDED = "recorded"


@dataclass(frozen=True)
class DiffCase:
    """One request to compare, and where it came from.

    A case read from a decision-log record keeps the decision recorded there
    (``recorded``, the record's ``result``) and the revision that made it, so
    a new policy can be compared with what was actually decided, even when
    the policy that decided it no longer loads (``--base recorded``).
    """

    name: str
    source: str
    request: Request
    recorded: Mapping[str, Any] | None = None
    recorded_revision: str | None = None


def generated_cases(n: int, seed: int) -> list[DiffCase]:
    """``n`` generated requests (:func:`~helpdesk_policy.ci.generate.generate_requests`) as cases."""
    from .generate import generate_requests

    source = f"generated (seed {seed})"
    return [DiffCase(r.request.id, source, r) for r in generate_requests(n, seed)]


def _is_log_record(item: Any) -> bool:
    # A decision-log record (ours from HelpdeskPolicy(log_sink=...), or OPA's)
    # carries the request under "input"; a request has "request" at the top.
    return isinstance(item, Mapping) and "input" in item and "request" not in item


def _case_from_item(item: Any, label: str, source: str, errors: list[FieldError]) -> DiffCase | None:
    if _is_log_record(item):
        doc = item["input"]
        decision_id = item.get("decision_id")
        if isinstance(decision_id, str) and decision_id:
            label = f"{label} (decision {decision_id[:8]})"
        if not isinstance(doc, Mapping):
            errors.append(FieldError(f"{label}: input",
                                     "the decision-log record has no request input (masked or dropped?)"))
            return None
    else:
        doc = item
    try:
        request = parse_request(doc)
    except InvalidRequestError as exc:
        errors.extend(FieldError(f"{label}: {e.path}", e.message) for e in exc.errors)
        return None
    if not _is_log_record(item):
        label = f"{label} ({request.request.id})"
        return DiffCase(label, source, request)
    result, revision = item.get("result"), item.get("policy_revision")
    return DiffCase(label, source, request,
                    recorded=result if isinstance(result, Mapping) else None,
                    recorded_revision=revision if isinstance(revision, str) else None)


def _display(path: Path) -> str:
    # Relative to the working directory when inside it (shorter, stable in CI
    # logs), without resolving symlinks: names read as the user spelled them.
    rel = os.path.relpath(os.path.abspath(path))
    return Path(rel).as_posix() if not rel.startswith("..") else str(path)


def _document_error(exc: DocumentError, shown: str) -> FieldError:
    """A strict reader's error, named as the user spelled the file."""
    return FieldError(shown if exc.line is None else f"{shown}: line {exc.line}", exc.detail)


def _cases_from_file(path: Path, errors: list[FieldError], label: str | None = None) -> list[DiffCase]:
    """The cases of one file; ``label`` names a suite found in a directory (``guidance/x.yaml``)."""
    from .suites import SuiteError, load_suite

    shown = _display(path)
    try:
        text = read_text(path)
    except DocumentError as exc:
        errors.append(_document_error(exc, shown))
        return []

    if path.suffix in (".jsonl", ".ndjson"):
        lines: list[tuple[int, str]] = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        return _cases_from_lines(shown, lines, errors)

    try:
        doc = load_yaml(text, source=shown) if path.suffix in (".yaml", ".yml") else load_json(text, source=shown)
    except DocumentError as exc:
        if path.suffix not in (".yaml", ".yml") and exc.detail == "not valid JSON: Extra data":
            # Several JSON documents, one per line: JSONL under a .json name.
            lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
            return _cases_from_lines(shown, lines, errors)
        errors.append(_document_error(exc, shown))
        return []

    if isinstance(doc, Mapping) and "cases" in doc:
        try:
            suite = load_suite(path, display=label)
        except SuiteError as exc:
            errors.extend(exc.errors)
            return []
        return [DiffCase(f"{suite.label}: {c.name}", shown, c.request) for c in suite.cases]
    if isinstance(doc, list):
        out = []
        for i, item in enumerate(doc):
            case = _case_from_item(item, f"{shown}[{i}]", shown, errors)
            if case is not None:
                out.append(case)
        return out
    if isinstance(doc, Mapping):
        case = _case_from_item(doc, shown, shown, errors)
        return [case] if case is not None else []
    errors.append(FieldError(shown, "expected a request, an array of requests, a suite or decision-log records"))
    return []


def _cases_from_lines(shown: str, lines: list[tuple[int, str]], errors: list[FieldError]) -> list[DiffCase]:
    out = []
    for lineno, line in lines:
        label = f"{shown}:{lineno}"
        try:
            item = load_json(line, source=label)
        except DocumentError as exc:
            # The line within a one-line document is always 1: name the file's line only.
            errors.append(FieldError(label, exc.detail))
            continue
        case = _case_from_item(item, label, shown, errors)
        if case is not None:
            out.append(case)
    return out


def load_cases(paths: Iterable[str | Path]) -> list[DiffCase]:
    """Read cases from files or directories (their ``*.json``, ``*.jsonl``, ``*.ndjson``,
    ``*.yaml``, ``*.yml`` files, subdirectories included, sorted by path).

    Each file may hold a request object, a JSON array of requests, JSONL (one
    request per line), an expectation suite (its cases; expectations are
    ignored), or decision-log records (JSON or JSONL objects with an ``input``
    field, as written by ``HelpdeskPolicy(log_sink=...)`` or OPA's decision
    logs; redacted inputs are fine, redaction keeps them valid). Every file is
    read strictly: not UTF-8, invalid syntax, a duplicated key or deep nesting
    is an error naming the file and line, never a guess at what was meant.

    Raises:
        DiffError: a path is missing or any file or request is invalid; every
            problem is listed with its file and line or index. Invalid inputs
            are never skipped: a diff that silently dropped cases would report
            fewer changes than the policy change makes.
    """
    errors: list[FieldError] = []
    out: list[DiffCase] = []
    from .suites import files_under

    for item in paths:
        p = Path(item)
        if p.is_dir():
            files = files_under(p, CASE_SUFFIXES)
            if not files:
                errors.append(FieldError(_display(p), f"no case files ({', '.join(CASE_SUFFIXES)}) in this directory"))
            for f in files:
                out += _cases_from_file(f, errors, f.relative_to(p).as_posix())
        elif p.is_file():
            out += _cases_from_file(p, errors)
        else:
            errors.append(FieldError(str(p), "no such file or directory"))
    if errors:
        raise DiffError(errors)
    return out


# ------------------------------------------------------------- policy versions


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", *args], cwd=repo, input=input, capture_output=True, check=False)
    except FileNotFoundError:
        raise DiffError("git is not installed (needed for git:<ref> policy versions)") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip() or f"git {' '.join(args)} failed"
        raise DiffError(msg)
    return proc.stdout


def git_toplevel(start: Path) -> Path:
    """The top directory of the git work tree containing ``start``.

    Raises:
        DiffError: ``start`` is not inside a git work tree.
    """
    try:
        out = _git(start, "rev-parse", "--show-toplevel")
    except DiffError as exc:
        raise DiffError(f"{start} is not inside a git repository ({exc.errors[0].message})") from None
    return Path(out.decode().strip())


def _ls_entry(repo: Path, commit: str, path: str) -> tuple[str, str, str] | None:
    """``(mode, type, object)`` of ``path`` in ``commit``, or None when absent."""
    out = _git(repo, "ls-tree", "-z", "--full-tree", commit, "--", path)
    if not out:
        return None
    meta = out.split(b"\t", 1)[0].decode()
    mode, kind, obj = meta.split()
    return mode, kind, obj


def _resolve_tree_path(repo: Path, commit: str, path: str, _depth: int = 0) -> tuple[str, str, str]:
    """Follow symlinks stored in git (``policies -> src/helpdesk_policy/policies``)
    component by component; returns ``(resolved path, type, object)``."""
    if _depth > 40:
        raise DiffError(f"too many symbolic links resolving {path!r} at {commit[:12]}")
    norm = posixpath.normpath(path.strip("/")) if path.strip("/") else "."
    if norm == ".":
        return "", "tree", f"{commit}^{{tree}}"
    if norm == ".." or norm.startswith("../"):
        raise DiffError(f"path {path!r} leaves the repository")
    parts = norm.split("/")
    for i in range(len(parts)):
        prefix = "/".join(parts[: i + 1])
        entry = _ls_entry(repo, commit, prefix)
        if entry is None:
            raise DiffError(f"{prefix!r} does not exist at {commit[:12]}")
        mode, kind, obj = entry
        if mode == "120000":
            target = _git(repo, "cat-file", "blob", obj).decode("utf-8", "replace")
            if posixpath.isabs(target):
                raise DiffError(f"{prefix!r} at {commit[:12]} is a symlink to an absolute path ({target})")
            rest = parts[i + 1:]
            joined = posixpath.join(posixpath.dirname(prefix), target, *rest)
            return _resolve_tree_path(repo, commit, joined, _depth + 1)
        if i < len(parts) - 1 and kind != "tree":
            raise DiffError(f"{prefix!r} at {commit[:12]} is not a directory")
    return norm, kind, obj


#: Git modes of the regular files an export writes (a symlink is written as the blob it resolves to).
_REGULAR_MODES = frozenset({"100644", "100755"})


def _export_name(rel: str, where: str) -> list[str]:
    """The components of a tree entry's path, refused unless it is a plain relative path.

    A crafted tree (``git mktree`` accepts an entry named ``..``) can list
    ``../../escape.rego``; written as given it would land outside the
    export directory. Names git itself never produces are refused too.
    """
    parts = rel.split("/")
    if rel.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise DiffError(f"{where}: entry {rel!r} is not a plain relative path (absolute, empty, '.' or '..')")
    if "\\" in rel or any(ord(ch) < 32 for ch in rel):
        raise DiffError(f"{where}: entry {rel!r} holds a backslash or a control character")
    return parts


def _write_exported(dest: Path, rel: str, parts: list[str], data: bytes, where: str) -> None:
    """Create ``dest/<parts>`` as a new regular file, never through a symlink and never outside ``dest``."""
    root = dest.resolve()
    target = root.joinpath(*parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(root):
            raise DiffError(f"{where}: entry {rel!r} resolves outside the export directory")
        # O_EXCL: a second entry of the same name (a crafted tree, or a case-insensitive
        # file system) is an error, not an overwrite; O_NOFOLLOW: never write through a link.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileExistsError:
        raise DiffError(f"{where}: entry {rel!r} is listed twice") from None
    except OSError as exc:
        raise DiffError(f"{where}: cannot export entry {rel!r}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def export_git_policy_dir(repo: Path, ref: str, path: str, dest: Path) -> str:
    """Write the files of directory ``path`` at git ``ref`` into ``dest``.

    Symlinks in ``path`` (and inside the directory) are resolved in the
    commit's tree, so the repository's ``policies -> src/helpdesk_policy/policies``
    link works. Returns the commit id.

    Every entry is checked before anything is written: a path that is absolute
    or holds ``..`` (or another component git never writes), a submodule, a
    symlink to a directory, or any other non-regular entry is refused, and each
    file is created new (never through a symlink, never twice) inside ``dest``.

    Raises:
        DiffError: unknown ref, missing path, the path is not a directory, or
            an entry is unsafe (the error names it).
    """
    try:
        commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except DiffError:
        raise DiffError(f"unknown git ref {ref!r} in {repo}") from None
    resolved, kind, obj = _resolve_tree_path(repo, commit, path)
    if kind != "tree":
        raise DiffError(f"{path!r} at {ref} is not a directory")
    where = f"{path!r} at {ref}"
    listing = _git(repo, "ls-tree", "-r", "-z", obj)
    entries: list[tuple[str, list[str], str]] = []
    for raw in listing.split(b"\0"):
        if not raw:
            continue
        meta, name = raw.split(b"\t", 1)
        mode, kind_, sha = meta.decode().split()
        rel = name.decode("utf-8", "surrogateescape")
        parts = _export_name(rel, where)
        if mode == "120000":
            link = _git(repo, "cat-file", "blob", sha).decode("utf-8", "replace")
            base = posixpath.join(resolved, posixpath.dirname(rel)) if resolved else posixpath.dirname(rel)
            _, kind_, sha = _resolve_tree_path(repo, commit, posixpath.join(base, link))
            if kind_ != "blob":
                raise DiffError(f"{where}: entry {rel!r} is a symlink to a {kind_}, not to a file")
        elif kind_ != "blob" or mode not in _REGULAR_MODES:
            # A submodule (its files are not in this repository) or a mode git
            # does not write: refusing beats exporting a policy with files missing.
            raise DiffError(f"{where}: entry {rel!r} is not a regular file (mode {mode}, {kind_})")
        entries.append((rel, parts, sha))
    blobs = _read_blobs(repo, [sha for _, _, sha in entries])
    for rel, parts, sha in entries:
        _write_exported(dest, rel, parts, blobs[sha], where)
    return commit


def _read_blobs(repo: Path, shas: Sequence[str]) -> dict[str, bytes]:
    """Many blobs in one ``git cat-file --batch`` call (one process, not one per file)."""
    unique = list(dict.fromkeys(shas))
    if not unique:
        return {}
    out = _git(repo, "cat-file", "--batch", input=("\n".join(unique) + "\n").encode())
    blobs: dict[str, bytes] = {}
    pos = 0
    for sha in unique:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].decode().split()
        if len(header) != 3:
            raise DiffError(f"cannot read git object {sha}: {' '.join(header)}")
        size = int(header[2])
        blobs[sha] = out[nl + 1: nl + 1 + size]
        pos = nl + 1 + size + 1
    return blobs


def parse_git_spec(spec: str) -> tuple[str, str | None]:
    """``git:<ref>[:<path>]`` -> ``(ref, path or None)``. Git refs cannot contain ``:``."""
    rest = spec[len("git:"):]
    ref, sep, path = rest.partition(":")
    if not ref:
        raise DiffError(f"{spec!r}: expected git:<ref>[:<path>], e.g. git:origin/main or git:HEAD~1:policies")
    return ref, (path if sep and path else None)


def default_git_path(repo_top: Path, other: str | None) -> str:
    """The policy directory to read at a git ref when the spec names none.

    The other side's directory when it lies in the repository (so
    ``--base git:origin/main --head policies`` compares ``policies`` with
    itself at ``origin/main``), else the stock policy directory's place in the
    repository, else ``policies``.
    """
    candidates = []
    if other is not None and not other.startswith("git:"):
        # Not resolve(): keep the last component as the repository spells it
        # (a ``policies`` symlink is resolved inside the commit, where it may
        # point elsewhere). Its parent may be resolved (/tmp -> /private/tmp).
        spelled = Path(os.path.abspath(other))
        candidates += [spelled, spelled.parent.resolve() / spelled.name]
    candidates.append(stock_policy_dir())
    top = repo_top.resolve()
    for c in candidates:
        for root in (Path(os.path.abspath(repo_top)), top):
            try:
                return c.relative_to(root).as_posix()
            except ValueError:
                continue
    return "policies"


def resolve_policy_source(
    spec: str, workdir: Path, *, repo: Path | None = None, other: str | None = None
) -> tuple[Path, str]:
    """Turn a ``--base``/``--head`` value into a policy directory.

    Args:
        spec: a directory, or ``git:<ref>[:<path>]`` (the directory at that ref).
        workdir: an empty directory to export git versions into.
        repo: the repository for git specs (default: the one containing the cwd).
        other: the other side's spec, used for the default path of a git spec.

    Returns:
        ``(directory, description)``, e.g. ``(tmp/base, "git:origin/main:policies @ 1a2b3c4d5e6f")``.

    Raises:
        DiffError: the directory does not exist, or the git spec cannot be resolved.
    """
    if not spec.startswith("git:"):
        p = Path(spec)
        if not p.is_dir():
            raise DiffError(f"policy directory not found: {spec}")
        return p, spec
    ref, path = parse_git_spec(spec)
    top = git_toplevel(repo if repo is not None else Path.cwd())
    if path is None:
        path = default_git_path(top, other)
    workdir.mkdir(parents=True, exist_ok=True)
    commit = export_git_policy_dir(top, ref, path, workdir)
    return workdir, f"git:{ref}:{path} @ {commit[:12]}"


# ------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Outcome:
    """What one version decided for a case (or the error that stopped it)."""

    level: Level | None
    reasons: tuple[tuple[str, Level], ...] = ()
    obligations: tuple[tuple[str, str], ...] = ()  # (code, canonical JSON of the whole obligation)
    error: str | None = None
    playbook: str | None = None
    messages: tuple[tuple[str, str], ...] = ()  # (code, message), sorted
    #: The constraints as leaves: ("callback.min_contact_age_days", canonical JSON of the value), sorted.
    constraints: tuple[tuple[str, str], ...] = ()

    @property
    def allowed(self) -> bool | None:
        return None if self.level is None else self.level.allowed

    @property
    def reason_codes(self) -> list[str]:
        return [c for c, _ in self.reasons]

    @property
    def obligation_codes(self) -> list[str]:
        return [c for c, _ in self.obligations]

    def constraint(self, path: str) -> Any:
        """One constraint leaf's value (``None`` when this decision has no such constraint)."""
        found = dict(self.constraints).get(path)
        return None if found is None else json.loads(found)

    def messages_by_code(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for code, message in self.messages:
            out[code] = (*out.get(code, ()), message)
        return out

    @classmethod
    def of(cls, verdict: Verdict) -> Outcome:
        reasons = tuple(sorted({(r.code, r.level) for r in verdict.reasons}, key=lambda t: (-t[1].rank, t[0])))
        obligations = tuple(sorted(
            (o.code, json.dumps(o.model_dump(mode="json", exclude_none=True), sort_keys=True))
            for o in verdict.obligations
        ))
        messages = tuple(sorted({(r.code, r.message) for r in verdict.reasons}))
        constraints: list[tuple[str, str]] = []
        if verdict.constraints is not None:
            for section in ("approver", "callback"):
                part = getattr(verdict.constraints, section)
                if part is not None:
                    constraints += [(f"{section}.{key}", json.dumps(value, sort_keys=True))
                                    for key, value in part.model_dump(mode="json").items()]
        return cls(level=verdict.level, reasons=reasons, obligations=obligations, playbook=verdict.playbook,
                   messages=messages, constraints=tuple(sorted(constraints)))

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        messages = self.messages_by_code()
        return {
            "level": self.level.value if self.level else None,
            "allowed": self.allowed,
            "reasons": [{"code": c, "level": lvl.value, "messages": list(messages.get(c, ()))}
                        for c, lvl in self.reasons],
            "obligations": [json.loads(j) for _, j in self.obligations],
            "constraints": {path: json.loads(j) for path, j in self.constraints},
            "playbook": self.playbook,
        }


@dataclass(frozen=True)
class CaseDiff:
    """One case under both versions, and how it changed."""

    case: DiffCase
    base: Outcome
    head: Outcome
    change: Change
    reasons_added: tuple[str, ...] = ()
    reasons_removed: tuple[str, ...] = ()
    reason_levels_changed: tuple[tuple[str, Level, Level], ...] = ()
    obligations_added: tuple[str, ...] = ()
    obligations_removed: tuple[str, ...] = ()
    obligations_changed: tuple[str, ...] = ()
    messages_changed: tuple[str, ...] = ()
    #: The constraint leaves that differ (``approver.exclude``, ``callback.contact_usable``…).
    constraints_changed: tuple[str, ...] = ()

    @property
    def playbook_changed(self) -> bool:
        """The playbook changed beyond what a level change implies (``x-callback`` -> ``x-step-up`` is not news)."""
        if self.change is Change.ERROR or self.base.playbook is None or self.head.playbook is None:
            return False
        b_level, h_level = self.base.level, self.head.level
        assert b_level is not None and h_level is not None  # not an error: both decided
        b_slug, h_slug = _slug(b_level), _slug(h_level)
        stem = self.base.playbook.removesuffix(b_slug) if self.base.playbook.endswith(b_slug) else None
        return stem is None or self.head.playbook != stem + h_slug

    @property
    def action(self) -> str:
        return self.case.request.request.action.value

    @property
    def target_type(self) -> str:
        return self.case.request.target.type.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "source": self.case.source,
            "action": self.action,
            "target_type": self.target_type,
            "change": self.change.value,
            "base": self.base.to_dict(),
            "head": self.head.to_dict(),
            "reasons_added": list(self.reasons_added),
            "reasons_removed": list(self.reasons_removed),
            "reason_levels_changed": [
                {"code": c, "base": b.value, "head": h.value} for c, b, h in self.reason_levels_changed
            ],
            "obligations_added": list(self.obligations_added),
            "obligations_removed": list(self.obligations_removed),
            "obligations_changed": list(self.obligations_changed),
            "messages_changed": list(self.messages_changed),
            "constraints_changed": [
                {"constraint": c, "base": self.base.constraint(c), "head": self.head.constraint(c)}
                for c in self.constraints_changed
            ],
            "playbook_changed": (
                {"base": self.base.playbook, "head": self.head.playbook} if self.playbook_changed else None
            ),
            # Free text a requester controls is redacted, as in decision logs (guarantee 5).
            "input": redact(self.case.request),
        }


def compare(case: DiffCase, base: Outcome, head: Outcome) -> CaseDiff:
    """Classify how ``case`` changed from ``base`` to ``head``."""
    if base.error is not None or head.error is not None or base.level is None or head.level is None:
        return CaseDiff(case, base, head, Change.ERROR)
    b_reasons, h_reasons = dict(base.reasons), dict(head.reasons)
    added = tuple(sorted(set(h_reasons) - set(b_reasons)))
    removed = tuple(sorted(set(b_reasons) - set(h_reasons)))
    relevelled = tuple(sorted(
        (c, b_reasons[c], h_reasons[c]) for c in set(b_reasons) & set(h_reasons) if b_reasons[c] != h_reasons[c]
    ))
    b_obl, h_obl = dict(base.obligations), dict(head.obligations)
    o_added = tuple(sorted(set(h_obl) - set(b_obl)))
    o_removed = tuple(sorted(set(b_obl) - set(h_obl)))
    o_changed = tuple(sorted(c for c in set(b_obl) & set(h_obl) if b_obl[c] != h_obl[c]))
    strengths = [_obligation_strength(json.loads(b_obl[c]), json.loads(h_obl[c])) for c in o_changed]
    weakened = bool(o_removed) or any(s < 0 for s in strengths)
    strengthened = bool(o_added) or any(s > 0 for s in strengths)
    b_msgs, h_msgs = base.messages_by_code(), head.messages_by_code()
    reworded = tuple(sorted(c for c in set(b_msgs) & set(h_msgs) if b_msgs[c] != h_msgs[c]))
    b_book, h_book = playbook_level(base.playbook), playbook_level(head.playbook)
    # A playbook for a lower level walks the agent through less than the decision requires.
    book_lowered = b_book is not None and (h_book is None or h_book < b_book)
    b_con, h_con = dict(base.constraints), dict(head.constraints)
    c_changed = tuple(sorted(c for c in set(b_con) | set(h_con) if b_con.get(c) != h_con.get(c)))
    c_strength = _constraints_strength(b_con, h_con, c_changed)
    o_stronger = strengthened and all(s > 0 for s in strengths)
    if head.level.rank < base.level.rank:
        change = Change.LOOSER
    elif head.level.rank > base.level.rank:
        change = Change.STRICTER
    elif weakened or book_lowered or c_strength < 0:
        change = Change.LOOSER
    elif added or removed or relevelled or reworded:
        change = Change.REASONS
    elif base.playbook != head.playbook:
        change = Change.PLAYBOOK
    elif (o_stronger or not (o_added or o_changed)) and (c_strength > 0 or not c_changed) and (o_stronger or c_changed):
        change = Change.STRICTER
    elif o_added or o_changed:
        change = Change.OBLIGATIONS
    elif c_changed:
        change = Change.CONSTRAINTS
    else:
        change = Change.UNCHANGED
    return CaseDiff(case, base, head, change, added, removed, relevelled, o_added, o_removed, o_changed, reworded,
                    c_changed)


def _constraints_strength(base: Mapping[str, str], head: Mapping[str, str], changed: Sequence[str]) -> int:
    """-1 if the head's constraints demand less, +1 if more, 0 if neither is clear.

    Judged where the direction is known (CISA AA23-320A: the callback goes to an
    aged contact of record, never to the factor being recovered; NIST SP 800-63B-4:
    the approver is independent of the requester): a constraint that disappears
    is weaker and one that appears stronger; a shorter ``min_contact_age_days``
    is weaker; ``contact_usable`` turning true is weaker (the fallback to the
    manager of record or an in-person check no longer applies); an
    ``approver.exclude`` that lost an identity is weaker;
    ``not_the_recovered_factor`` turning false is weaker. Any other change (whom
    the callback goes to, the approvers' ids) is 0: reported, left to the reviewer.
    """
    weaker = stronger = unknown = False
    sections_b = {c.split(".", 1)[0] for c in base}
    sections_h = {c.split(".", 1)[0] for c in head}
    for path in changed:
        section = path.split(".", 1)[0]
        if section not in sections_h:
            weaker = True
            continue
        if section not in sections_b:
            stronger = True
            continue
        b, h = json.loads(base[path]), json.loads(head[path])
        if path == "callback.min_contact_age_days" and isinstance(b, int) and isinstance(h, int):
            weaker |= h < b
            stronger |= h > b
        elif path in ("callback.contact_usable", "callback.not_the_recovered_factor") and isinstance(b, bool) \
                and isinstance(h, bool):
            loosened = h if path == "callback.contact_usable" else not h
            weaker |= loosened
            stronger |= not loosened
        elif path == "approver.exclude" and isinstance(b, list) and isinstance(h, list):
            weaker |= any(x not in h for x in b)
            stronger |= any(x not in b for x in h)
        else:
            unknown = True
    if weaker:
        return -1
    if stronger and not unknown:
        return 1
    return 0


def _slug(level: Level) -> str:
    """How a playbook name ends for ``level``: ``-step-up``."""
    return "-" + level.value.replace("_", "-")


def playbook_level(playbook: str | None) -> Level | None:
    """The level a playbook is for, read from its ending (``mfa-reset-step-up`` -> ``step_up``); None if none."""
    if playbook is None:
        return None
    for level in sorted(Level, key=lambda lv: -len(lv.value)):
        if playbook.endswith(_slug(level)):
            return level
    return None


def _obligation_strength(base: Mapping[str, Any], head: Mapping[str, Any]) -> int:
    """-1 if the head's obligation (same code) demands less, +1 if more, 0 if neither is clear.

    Only parameters whose direction is known are judged: a ``within_hours``
    deadline (longer is weaker) and list parameters such as the evidence
    ``fields`` (an item lost is weaker). A change in both directions, or in
    any other parameter, is 0: reported, left to the reviewer.
    """
    weaker = stronger = unknown = False
    for key in (set(base) | set(head)) - {"code"}:
        b, h = base.get(key), head.get(key)
        if b == h:
            continue
        if key == "within_hours" and isinstance(b, (int, float)) and isinstance(h, (int, float)):
            weaker |= h > b
            stronger |= h < b
        elif isinstance(b, list) and isinstance(h, list):
            weaker |= any(x not in h for x in b)
            stronger |= any(x not in b for x in h)
        else:
            unknown = True
    if weaker and not stronger:
        return -1
    if stronger and not weaker and not unknown:
        return 1
    return 0


def recorded_outcome(case: DiffCase) -> Outcome:
    """The decision a decision-log record holds for ``case``, validated like an engine's answer.

    A record without a result, or with one that is not a valid decision, is
    this case's error: a diff never guesses what was decided.
    """
    if case.recorded is None:
        return Outcome(None, error="no recorded decision (not a decision-log record with a result)")
    doc = {k: v for k, v in case.recorded.items() if k in Verdict.model_fields}
    try:
        return Outcome.of(Verdict.model_validate(doc))
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        return Outcome(None, error=f"the recorded decision is not valid: {first}")


def recorded_version(cases: Sequence[DiffCase]) -> VersionInfo:
    """The base side of ``--base recorded``: the revisions the records name."""
    revisions = sorted({c.recorded_revision for c in cases if c.recorded_revision})
    if len(revisions) == 1:
        revision = revisions[0]
    else:
        revision = f"{len(revisions)} revisions" if revisions else "unknown"
    return VersionInfo(RECORDED, "the decisions recorded in the decision logs", revision)


class _Evaluator:
    """The ``rego`` engine for one policy set, answering :class:`Outcome` objects.

    Not the facade: a diff must see a version's own answer or its error, never
    a fallback engine's answer or a fail-closed ``callback``.
    """

    def __init__(self, policy_set: PolicySet) -> None:
        from ..engines import load_engine

        self.engine = load_engine("rego", policy_set)

    def __call__(self, request: Request) -> Outcome:
        from ..engines.base import checked_verdict

        try:
            verdict = checked_verdict(self.engine, self.engine.evaluate(request))
        except HelpdeskPolicyError as exc:
            return Outcome(None, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - an engine bug is this case's error, not the diff's crash
            return Outcome(None, error=f"unexpected {type(exc).__name__}: {exc}")
        return Outcome.of(verdict)

    def close(self) -> None:
        self.engine.close()


@dataclass
class _Versions:
    """What decides a diff's cases in one process: the base (None: ``--base recorded``), the head,
    and OPA's Go evaluator on the head (None: no conformance check)."""

    base: _Evaluator | None
    head: _Evaluator
    opa: OpaGoEngine | None = None

    def close(self) -> None:
        for part in (self.base, self.head, self.opa):
            if part is not None:
                part.close()


#: A chunk of cases as a worker gets them: (name, request) pairs.
_Chunk = list[tuple[str, Request]]
#: Base outcomes (None: recorded), head outcomes, conformance mismatches, seconds spent on conformance.
_ChunkResult = tuple[list[Outcome] | None, list[Outcome], list[EngineMismatch], float]


def _versions_in_worker(base: PolicySet | None, head: PolicySet, conformance: bool) -> _Versions:
    """A worker's evaluators (the policy sets arrive pickled, their Rego already read)."""
    versions = _Versions(None if base is None else _Evaluator(base), _Evaluator(head))
    if conformance:
        versions.opa = OpaGoEngine(head)
    return versions


def _decide_chunk(versions: _Versions, chunk: _Chunk) -> _ChunkResult:
    """One chunk, in whichever process: both versions' outcomes, and the head under OPA's Go evaluator."""
    base = None if versions.base is None else [versions.base(r) for _, r in chunk]
    head = [versions.head(r) for _, r in chunk]
    if versions.opa is None:
        return base, head, [], 0.0
    started = time.perf_counter()
    mismatches = compare_engines(versions.head.engine, versions.opa, chunk, summary=conformance_summary)
    return base, head, mismatches, time.perf_counter() - started


@dataclass(frozen=True)
class VersionInfo:
    """One side of the diff: what was asked for and what was loaded."""

    spec: str
    description: str
    revision: str

    def to_dict(self) -> dict[str, str]:
        return {"spec": self.spec, "source": self.description, "revision": self.revision}


@dataclass
class DiffReport:
    """Every case's :class:`CaseDiff`, with counts and renderers."""

    base: VersionInfo
    head: VersionInfo
    diffs: list[CaseDiff]
    sources: list[str] = field(default_factory=list)
    allow_loosening: bool = False
    conformance: Comparison = field(default_factory=lambda: skipped_conformance("not run"))
    """The head decided by rego-cpp and by OPA's Go evaluator (:mod:`helpdesk_policy.ci.conformance`)."""

    # ---------------------------------------------------------------- queries

    def of(self, change: Change) -> list[CaseDiff]:
        return [d for d in self.diffs if d.change is change]

    def counts(self) -> dict[str, int]:
        """Cases per :class:`Change` value (every key present), plus ``total``."""
        c = Counter(d.change.value for d in self.diffs)
        out = {ch.value: c.get(ch.value, 0) for ch in Change}
        out["total"] = len(self.diffs)
        return out

    def by_group(self) -> list[dict[str, Any]]:
        """Counts per (action, target type), groups in a fixed order."""
        groups: dict[tuple[str, str], Counter[str]] = {}
        for d in self.diffs:
            groups.setdefault((d.action, d.target_type), Counter())[d.change.value] += 1
        rows = []
        for (action, target_type), c in sorted(groups.items()):
            row: dict[str, Any] = {"action": action, "target_type": target_type, "total": sum(c.values())}
            row.update({ch.value: c.get(ch.value, 0) for ch in Change})
            rows.append(row)
        return rows

    @property
    def has_loosening(self) -> bool:
        return any(d.change is Change.LOOSER for d in self.diffs)

    @property
    def head_errors(self) -> list[CaseDiff]:
        return [d for d in self.diffs if d.change is Change.ERROR and d.head.error is not None]

    @property
    def exit_code(self) -> int:
        """1 when a decision got looser (unless allowed), the head cannot decide a case, or rego-cpp
        and OPA decide the head differently; else 0."""
        if self.head_errors or self.conformance.status == "failed":
            return 1
        if self.has_loosening and not self.allow_loosening:
            return 1
        return 0

    # -------------------------------------------------------------- rendering

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable report: counts, per-group counts, every changed case."""
        return {
            "base": self.base.to_dict(),
            "head": self.head.to_dict(),
            "sources": list(self.sources),
            "counts": self.counts(),
            "by_group": self.by_group(),
            "loosening": self.has_loosening,
            "allow_loosening": self.allow_loosening,
            "conformance": self.conformance.to_dict(),
            "exit_code": self.exit_code,
            "changes": [d.to_dict() for d in self.diffs if d.change is not Change.UNCHANGED],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self, max_examples: int = 10) -> str:
        """A pull-request comment: verdict, looser decisions first, counts, collapsible details."""
        return _render_markdown(self, max_examples)


def diff_policies(
    base: PolicySet | None,
    head: PolicySet,
    cases: Sequence[DiffCase],
    *,
    base_label: str = "base",
    head_label: str = "head",
    base_description: str | None = None,
    head_description: str | None = None,
    sources: Sequence[str] = (),
    allow_loosening: bool = False,
    opa: OpaCheck = "auto",
    workers: int | None = None,
    progress: bool = False,
) -> DiffReport:
    """Evaluate ``cases`` under both policy sets with the ``rego`` engine and compare.

    ``base=None`` compares the head with the decisions the cases' decision-log
    records hold (``--base recorded``): what was actually decided, by
    whatever policy version and library version was running then.

    With ``opa`` ``"auto"`` (when OPA's Go evaluator is installed) or
    ``"require"``, the head also decides every case under OPA's Go evaluator,
    and any disagreement with rego-cpp fails the report.

    ``workers`` processes, this one included, decide the cases
    (:mod:`helpdesk_policy.replay`): ``None`` uses every CPU from
    :data:`AUTO_MIN_CASES` cases on and this process alone below. The report
    is the same whichever process decided a case (the conformance check's
    ``duration_s`` is the time it took, summed over the processes).
    ``progress`` draws a progress bar on stderr when it is a terminal.

    Raises:
        EngineUnavailableError: regopy is not installed, or OPA's Go evaluator
            is not and ``opa="require"``.
        PolicyLoadError: a version's Rego does not compile.
        InvalidConfigError: ``workers`` is not a positive int or None.
    """
    if opa == "require":
        require_opa_go()  # before the evaluation, not after minutes of it
    n = plan_workers(len(cases), workers, auto_min=AUTO_MIN_CASES)
    evaluators: list[_Evaluator] = []
    versions: _Versions | None = None
    try:
        for ps, side in ((base, "base"), (head, "head")):
            if ps is None:
                continue
            try:
                evaluators.append(_Evaluator(ps))
            except PolicyLoadError as exc:
                raise PolicyLoadError(f"{side} policy: {exc}") from exc
        versions = _Versions(None if base is None else evaluators[0], evaluators[-1])
        engines = (versions.head.engine.name, OPA_GO)
        # The conformance check, unless it cannot run (then its verdict is known now).
        conformance: Comparison | None = None
        if opa == "off":
            conformance = skipped_conformance("disabled")
        elif opa_go_missing() is not None:
            conformance = skipped_conformance(f"install OPA's Go evaluator to check OPA conformance: "
                                              f"{OPA_INSTALL_HINT}")
        elif not cases:
            conformance = skipped_conformance("no requests")
        else:
            started = time.perf_counter()
            try:
                versions.opa = OpaGoEngine(head)
            except PolicyLoadError as exc:
                # rego-cpp compiled it and OPA does not: the fleet could not even load this bundle.
                conformance = Comparison("failed", engines, requests=len(cases), reason=str(exc),
                                         duration_s=time.perf_counter() - started)
        chunks: list[_Chunk] = [[(c.name, c.request) for c in cases[i:i + _CHUNK]]
                                for i in range(0, len(cases), _CHUNK)]
        job = WorkerJob(_versions_in_worker, (base, head, versions.opa is not None), _decide_chunk, what="diff")
        bar = ProgressBar(len(cases), "diff: cases decided") if progress else None
        results = run_chunks(chunks, local=functools.partial(_decide_chunk, versions), job=job, workers=n,
                             progress=bar)
    finally:
        if versions is not None:
            versions.close()
        else:
            for e in evaluators:
                e.close()
    diffs: list[CaseDiff] = []
    mismatches: list[EngineMismatch] = []
    spent = 0.0
    for start, (b_outcomes, h_outcomes, chunk_mismatches, seconds) in zip(range(0, len(cases), _CHUNK), results):
        for k, case in enumerate(cases[start:start + _CHUNK]):
            b_outcome = recorded_outcome(case) if b_outcomes is None else b_outcomes[k]
            diffs.append(compare(case, b_outcome, h_outcomes[k]))
        mismatches += chunk_mismatches
        spent += seconds
    if conformance is None:
        conformance = Comparison("failed" if mismatches else "passed", engines, requests=len(cases),
                                 mismatches=tuple(mismatches), duration_s=spent)
    if base is None:
        base_info = recorded_version(cases)
    else:
        base_info = VersionInfo(base_label, base_description or str(base.directory), base.revision)
    return DiffReport(
        base=base_info,
        head=VersionInfo(head_label, head_description or str(head.directory), head.revision),
        diffs=diffs,
        sources=list(sources),
        allow_loosening=allow_loosening,
        conformance=conformance,
    )


# -------------------------------------------------------------------- markdown

_CHANGE_TITLES: dict[Change, str] = {
    Change.LOOSER: "🔻 looser",
    Change.STRICTER: "🔺 stricter",
    Change.REASONS: "reasons changed (same level)",
    Change.PLAYBOOK: "playbook changed (same level and reasons)",
    Change.OBLIGATIONS: "obligations changed (same level and reasons)",
    Change.CONSTRAINTS: "constraints changed (same level and reasons)",
    Change.UNCHANGED: "unchanged",
    Change.ERROR: "❌ could not decide",
}


def _md(text: str) -> str:
    """Escape what would break a Markdown table cell or start markup."""
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
            .replace("<", "&lt;").replace(">", "&gt;"))


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def summarise_request(req: Request) -> str:
    """A one-line description of a request for a reviewer (no free text)."""
    a, t, c = req.actor, req.target, req.context
    who = a.type.value if a.relationship.value == "self" else f"{a.type.value} ({a.relationship.value})"
    auth = a.auth_strength.value
    target = t.type.value
    facts = []
    if t.privileged:
        facts.append(f"privileged, tier {t.privilege_tier}")
    elif t.privilege_tier:
        facts.append(f"tier {t.privilege_tier}")
    if t.vip:
        facts.append("VIP")
    if t.status.value != "active":
        facts.append(t.status.value)
    if t.type.is_nhi:
        facts.append(f"env {t.environment or '?'}")
        facts.append(f"consumers {t.consumers if t.consumers is not None else '?'}")
    parts = [f"{req.request.action.value} via {req.request.channel.value}",
             f"by {who}, auth {auth}",
             f"on {target}" + (f" ({', '.join(facts)})" if facts else "")]
    if c.risk_signals:
        parts.append("signals " + ", ".join(s.value for s in c.risk_signals))
    if c.failed_verifications_24h:
        parts.append(f"{c.failed_verifications_24h} failed verifications")
    if c.recent_credential_change_hours is not None:
        parts.append(f"credential changed {c.recent_credential_change_hours:g} h ago")
    if req.request.emergency:
        parts.append("emergency")
    return "; ".join(parts)


def _reason_changes(d: CaseDiff) -> str:
    items = [f"+{_code(c)}" for c in d.reasons_added]
    items += [f"-{_code(c)}" for c in d.reasons_removed]
    items += [f"{_code(c)} {b.value}→{h.value}" for c, b, h in d.reason_levels_changed]
    items += [f"{_code(c)} message changed" for c in d.messages_changed]
    return ", ".join(items) or "—"


def _playbook_change(d: CaseDiff) -> str:
    return f"{_code(d.base.playbook or '')} → {_code(d.head.playbook or '')}" if d.playbook_changed else "—"


def _obligation_changes(d: CaseDiff) -> str:
    items = [f"+{_code(c)}" for c in d.obligations_added]
    items += [f"-{_code(c)}" for c in d.obligations_removed]
    items += [f"{_code(c)} (parameters)" for c in d.obligations_changed]
    items += _constraint_changes(d)
    return ", ".join(items) or "—"


def _constraint_changes(d: CaseDiff) -> list[str]:
    """``-`callback` constraint`` for a constraint dropped (``+`` added), else each changed leaf with its values."""
    sections = lambda o: {path.split(".", 1)[0] for path, _ in o.constraints}  # noqa: E731
    b_sections, h_sections = sections(d.base), sections(d.head)
    items: list[str] = []
    for c in d.constraints_changed:
        section = c.split(".", 1)[0]
        if section not in h_sections or section not in b_sections:
            sign = "-" if section not in h_sections else "+"
            if f"{sign}{_code(section)} constraint" not in items:
                items.append(f"{sign}{_code(section)} constraint")
            continue
        items.append(f"{_code(c)} {_md(json.dumps(d.base.constraint(c)))}→{_md(json.dumps(d.head.constraint(c)))}")
    return items


def _levels(d: CaseDiff) -> str:
    b = d.base.level.value if d.base.level else "error"
    h = d.head.level.value if d.head.level else "error"
    return f"{_code(b)} → {_code(h)}" if b != h else _code(b)


def _example_table(diffs: Sequence[CaseDiff], max_examples: int) -> list[str]:
    # The obligations column appears when a shown case changed obligations
    # (a dropped obligation alone can make a decision looser).
    shown = diffs[:max_examples]
    obligations = any(d.obligations_added or d.obligations_removed or d.obligations_changed or d.constraints_changed
                      for d in shown)
    playbooks = any(d.playbook_changed for d in shown)
    header = "| case | request | base → head | reason changes |" \
        + (" obligation and constraint changes |" if obligations else "") \
        + (" playbook |" if playbooks else "")
    sep = "|---|---|---|---|" + ("---|" if obligations else "") + ("---|" if playbooks else "")
    lines = [header, sep]
    for d in shown:
        row = f"| {_md(d.case.name)} | {_md(summarise_request(d.case.request))} | {_levels(d)} | {_reason_changes(d)} |"
        if obligations:
            row += f" {_obligation_changes(d)} |"
        if playbooks:
            row += f" {_md(_playbook_change(d))} |"
        lines.append(row)
    if len(diffs) > max_examples:
        lines += ["", f"… and {len(diffs) - max_examples} more (all of them are in `--format json`)."]
    return lines


def _conformance_line(c: Comparison) -> str:
    if c.status == "failed" and not c.mismatches:
        return f"**❌ OPA's Go evaluator cannot load the head policy** ({_md(c.reason or '')[:600]})."
    if c.status == "failed":
        return (f"**❌ rego-cpp and OPA's Go evaluator decide {len(c.mismatches)} head case(s) differently.** "
                "OPA servers running this policy would not decide as this report says.")
    if c.status == "skipped":
        return f"OPA conformance: skipped — {_md(c.reason or '')}."
    return f"OPA conformance: ✅ rego-cpp and OPA's Go evaluator agree on all {c.requests} head decisions."


def _render_markdown(report: DiffReport, max_examples: int) -> str:
    counts = report.counts()
    looser = report.of(Change.LOOSER)
    errors = report.of(Change.ERROR)
    out = ["## Policy decision diff", ""]
    if looser and not report.allow_loosening:
        out.append(f"**⚠ {len(looser)} decision(s) became looser.** This fails the check: review them below; "
                   "if the loosening is intended, re-run with `--allow-loosening`.")
    elif looser:
        out.append(f"**⚠ {len(looser)} decision(s) became looser** (allowed by `--allow-loosening`).")
    else:
        out.append("**✅ No decision became looser.**")
    if report.head_errors:
        out.append(f"**❌ The head policy could not decide {len(report.head_errors)} case(s).**")
    out += ["", _conformance_line(report.conformance)]
    out += [
        "",
        f"Base `{_md(report.base.description)}` (`{report.base.revision[:19]}…`) → "
        f"head `{_md(report.head.description)}` (`{report.head.revision[:19]}…`), "
        f"{counts['total']} cases" + (f": {' + '.join(_md(s) for s in report.sources)}"
                                      if report.sources else "") + ".",
        "",
        "| change | decisions |",
        "|---|---:|",
    ]
    for ch in (Change.LOOSER, Change.STRICTER, Change.REASONS, Change.PLAYBOOK, Change.OBLIGATIONS,
               Change.CONSTRAINTS, Change.UNCHANGED, Change.ERROR):
        if ch is Change.ERROR and not counts[ch.value]:
            continue
        out.append(f"| {_CHANGE_TITLES[ch]} | {counts[ch.value]} |")

    if looser:
        out += ["", f"### ⚠ Looser decisions ({len(looser)})", ""]
        out += _example_table(looser, max_examples)
    mismatches = report.conformance.mismatches
    if mismatches:
        out += ["", f"### ❌ rego-cpp and OPA disagree ({len(mismatches)})", "",
                "| case | difference (rego-cpp vs OPA) |", "|---|---|"]
        for m in mismatches[:max_examples]:
            out.append(f"| {_md(m.case)} | {_md('; '.join(m.differences())[:600])} |")
        if len(mismatches) > max_examples:
            out += ["", f"… and {len(mismatches) - max_examples} more (all of them are in `--format json`)."]
    if errors:
        out += ["", f"### ❌ Could not decide ({len(errors)})", "", "| case | base | head |", "|---|---|---|"]
        for d in errors[:max_examples]:
            b = d.base.error or (d.base.level.value if d.base.level else "")
            h = d.head.error or (d.head.level.value if d.head.level else "")
            out.append(f"| {_md(d.case.name)} | {_md(b[:300])} | {_md(h[:300])} |")

    changed_groups = [g for g in report.by_group() if g["unchanged"] != g["total"]]
    if changed_groups:
        out += ["", "### Changes by action and target type", "",
                f"Groups with at least one change ({len(changed_groups)} of {len(report.by_group())}).", "",
                "| action | target type | cases | 🔻 looser | 🔺 stricter | reasons | playbook | obligations "
                "| constraints |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for g in changed_groups:
            out.append(f"| {_code(g['action'])} | {_code(g['target_type'])} | {g['total']} | {g['looser']} | "
                       f"{g['stricter']} | {g['reasons']} | {g['playbook']} | {g['obligations']} | "
                       f"{g['constraints']} |")

    for ch in (Change.STRICTER, Change.REASONS, Change.PLAYBOOK, Change.OBLIGATIONS, Change.CONSTRAINTS):
        diffs = report.of(ch)
        if not diffs:
            continue
        out += ["", f"<details><summary>{_CHANGE_TITLES[ch].capitalize()}: {len(diffs)}</summary>", ""]
        out += _example_table(diffs, max_examples)
        out += ["", "</details>"]
    if counts["unchanged"] == counts["total"]:
        out += ["", "No decision changed."]
    return "\n".join(out) + "\n"
