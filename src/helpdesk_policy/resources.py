"""Where the data shipped inside the package lives.

The stock policies are package data: the Rego modules and their unit tests,
``config.yaml`` and the expectation suites under ``helpdesk_policy/policies``
(the repository's top-level ``policies/`` points at it), so an installed wheel
works without the repository. The stock config (:mod:`helpdesk_policy.config`)
and the stock policy set (:mod:`helpdesk_policy.policyset`) both find their
files here, so neither needs the other to know where they are.

>>> from helpdesk_policy.resources import stock_policy_dir
>>> (stock_policy_dir() / "config.yaml").is_file()
True
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["stock_policy_dir"]


def stock_policy_dir() -> Path:
    """The stock policies shipped with the package."""
    return Path(__file__).resolve().parent / "policies"
