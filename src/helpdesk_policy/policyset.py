"""A set of Rego policies and its config, and their revision.

A :class:`PolicySet` is a directory of ``.rego`` files plus a
:class:`~helpdesk_policy.config.PolicyConfig`. The stock set ships inside the
package (:func:`~helpdesk_policy.resources.stock_policy_dir`:
``helpdesk_policy/policies``; the repository's top-level ``policies/`` points
at it), so an installed wheel works without the repo.

The *policy revision* is ``sha256:`` over the policy files (tests excluded,
sorted by relative path), the canonical config JSON and the canonical reason
catalogue JSON (``reasons.yaml``: rewording a reason is a policy change). An OPA bundle built
from the same files and config carries the same revision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .catalogue import CATALOGUE_FILE, ReasonCatalogue, load_catalogue
from .config import PolicyConfig, load_config
from .errors import PolicyLoadError
from .resources import stock_policy_dir

__all__ = ["PolicySet", "DECISION_PATH"]

#: The Rego document every engine evaluates.
DECISION_PATH = "helpdesk/decision"


def _is_test(path: Path) -> bool:
    return path.name.endswith("_test.rego")


@dataclass(frozen=True)
class PolicySet:
    """A policy directory and the config its Rego reads as ``data.helpdesk.config``."""

    directory: Path = field(default_factory=stock_policy_dir)
    config: PolicyConfig = field(default_factory=load_config)
    #: How the reasons read (``reasons.yaml``), read by Rego as ``data.helpdesk.catalogue``.
    catalogue: ReasonCatalogue = field(default_factory=load_catalogue)

    @classmethod
    def load(cls, directory: str | Path | None = None, config: Any = None) -> PolicySet:
        """Load a policy set. ``config`` may be a PolicyConfig, a mapping or a file path.

        Without ``config``, a ``config.yaml`` in ``directory`` is used when present
        (merged over the stock values), else the stock config.
        """
        d = Path(directory) if directory is not None else stock_policy_dir()
        if not d.is_dir():
            raise PolicyLoadError(f"policy directory not found: {d}")
        if config is None and directory is not None and (d / "config.yaml").is_file():
            config = d / "config.yaml"
        catalogue = load_catalogue(d / CATALOGUE_FILE if directory is not None and (d / CATALOGUE_FILE).is_file() else None)
        ps = cls(directory=d, config=load_config(config), catalogue=catalogue)
        if not ps.modules:
            raise PolicyLoadError(f"no .rego policy files in {d}")
        if directory is not None:
            # A directory someone edited: refuse broken or recursive Rego here,
            # naming file and line, before any engine is built on it. (The
            # shipped policies are checked when an engine compiles them.)
            ps.check()
        return ps

    def check(self, *, tests: bool = False) -> None:
        """Refuse Rego that no engine should compile: lexical damage, a missing
        package, and recursion between rules (see :mod:`helpdesk_policy.regocheck`).

        Args:
            tests: check the policy and test modules together (what the Rego
                test runner compiles), not the policy modules alone.

        Raises:
            PolicyLoadError: every problem, each as ``file:line: message``.
        """
        done = self.__dict__.setdefault("_checked", set())
        if tests in done:
            return
        from .regocheck import check_modules

        if tests:
            check_modules({**self.modules, **self.test_modules}, f"Rego policies and tests in {self.directory}")
        else:
            check_modules(self.modules, f"Rego policies in {self.directory}")
        done.add(tests)

    def rego_files(self, *, include_tests: bool = False) -> list[Path]:
        files = sorted(p for p in self.directory.rglob("*.rego") if p.is_file())
        return [p for p in files if include_tests or not _is_test(p)]

    @cached_property
    def modules(self) -> dict[str, str]:
        """Policy modules (tests excluded): relative path -> source."""
        return self._read(self.rego_files())

    @cached_property
    def test_modules(self) -> dict[str, str]:
        """The ``*_test.rego`` modules: relative path -> source."""
        return self._read([p for p in self.rego_files(include_tests=True) if _is_test(p)])

    def _read(self, paths: list[Path]) -> dict[str, str]:
        out: dict[str, str] = {}
        for p in paths:
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise PolicyLoadError(f"cannot read {p}: {exc.strerror}") from None
            try:
                # Rego sources are UTF-8 (OPA and rego-cpp both require it).
                out[p.relative_to(self.directory).as_posix()] = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = data.count(b"\n", 0, exc.start) + 1
                raise PolicyLoadError(f"{p}: line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} "
                                      f"at offset {exc.start}); Rego files must be UTF-8") from None
        return out

    def data(self) -> dict[str, Any]:
        """The base document: ``{"helpdesk": {"config": …, "catalogue": …}}``."""
        return {"helpdesk": {"config": self.config.to_data(), "catalogue": self.catalogue.to_data()}}

    @cached_property
    def revision(self) -> str:
        h = hashlib.sha256()
        for name, source in sorted(self.modules.items()):
            h.update(b"file\0" + name.encode() + b"\0" + source.encode() + b"\0")
        h.update(b"config\0" + self.config.canonical_json().encode())
        h.update(b"catalogue\0" + self.catalogue.canonical_json().encode())
        return "sha256:" + h.hexdigest()
