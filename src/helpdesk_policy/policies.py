"""Where the Rego policies live, and their revision.

A :class:`PolicySet` is a directory of ``.rego`` files plus a
:class:`~helpdesk_policy.config.PolicyConfig`. The stock set ships inside the
package (``helpdesk_policy/policies``; the repository's top-level
``policies/`` points at it), so an installed wheel works without the repo.

The *policy revision* is ``sha256:`` over the policy files (tests excluded,
sorted by relative path) and the canonical config JSON. An OPA bundle built
from the same files and config carries the same revision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .config import PolicyConfig, load_config
from .errors import PolicyLoadError

__all__ = ["PolicySet", "stock_policy_dir", "DECISION_PATH"]

#: The Rego document every engine evaluates.
DECISION_PATH = "helpdesk/decision"


def stock_policy_dir() -> Path:
    """The stock policies shipped with the package."""
    return Path(__file__).resolve().parent / "policies"


def _is_test(path: Path) -> bool:
    return path.name.endswith("_test.rego")


@dataclass(frozen=True)
class PolicySet:
    """A policy directory and the config its Rego reads as ``data.helpdesk.config``."""

    directory: Path = field(default_factory=stock_policy_dir)
    config: PolicyConfig = field(default_factory=load_config)

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
        ps = cls(directory=d, config=load_config(config))
        if not ps.modules:
            raise PolicyLoadError(f"no .rego policy files in {d}")
        return ps

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
                out[p.relative_to(self.directory).as_posix()] = p.read_text(encoding="utf-8")
            except OSError as exc:
                raise PolicyLoadError(f"cannot read {p}: {exc.strerror}") from None
        return out

    def data(self) -> dict[str, Any]:
        """The base document: ``{"helpdesk": {"config": …}}``."""
        return {"helpdesk": {"config": self.config.to_data()}}

    @cached_property
    def revision(self) -> str:
        h = hashlib.sha256()
        for name, source in sorted(self.modules.items()):
            h.update(b"file\0" + name.encode() + b"\0" + source.encode() + b"\0")
        h.update(b"config\0" + self.config.canonical_json().encode())
        return "sha256:" + h.hexdigest()
