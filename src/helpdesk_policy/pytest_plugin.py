"""pytest plugin: fixtures for testing helpdesk-policy decisions in your own suite.

Installed with ``pip install 'helpdesk-policy[testing]'`` and registered through
the ``pytest11`` entry point ``helpdesk_policy``, so it is active in every pytest
run of that environment; ``-p no:helpdesk_policy`` turns it off.

Fixtures:

``helpdesk_policy``
    a session-wide :class:`~helpdesk_policy.facade.HelpdeskPolicy`. Engine from
    ``--helpdesk-policy-engine`` or the ini option ``helpdesk_policy_engine``
    (default ``auto``); policy directory and config from
    ``--helpdesk-policy-dir`` / ``helpdesk_policy_dir`` and
    ``--helpdesk-policy-config`` / ``helpdesk_policy_config`` (ini paths are
    relative to the rootdir).
``decision_for``
    a function: request dict or :class:`~helpdesk_policy.models.Request` ->
    :class:`~helpdesk_policy.models.Decision`, using that policy.

And :func:`assert_decision` (from :mod:`helpdesk_policy.expectations`), which
fails with a readable diff of expected vs actual::

    from helpdesk_policy.pytest_plugin import assert_decision

    def test_phone_reset_of_admin(decision_for):
        d = decision_for({...})
        assert_decision(d, level="callback", reasons=["privileged_remote_recovery"],
                        obligations=["terminate_sessions"])

Cost when unused: this module imports only pytest (already loaded) and the
standard library; the engines, pydantic models, regopy and hypothesis are
imported when a fixture or ``assert_decision`` is first used, so test runs that
never use them are not slowed down or broken by a missing extra. (Python
imports the ``helpdesk_policy`` package itself before this module; see the
package ``__init__`` for what that costs.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .facade import HelpdeskPolicy
    from .models import Decision, Request

__all__ = ["assert_decision", "decision_for", "helpdesk_policy"]  # noqa: F822 - assert_decision via __getattr__

_ENGINES = ("auto", "native", "compiled", "rego", "opa")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("helpdesk-policy", "helpdesk-policy decisions")
    group.addoption("--helpdesk-policy-engine", dest="helpdesk_policy_engine", default=None, choices=_ENGINES,
                    help="Engine of the helpdesk_policy fixture (default: ini helpdesk_policy_engine, else auto).")
    group.addoption("--helpdesk-policy-dir", dest="helpdesk_policy_dir", default=None,
                    help="Policy directory of the helpdesk_policy fixture (default: the stock policies).")
    group.addoption("--helpdesk-policy-config", dest="helpdesk_policy_config", default=None,
                    help="Policy config file of the helpdesk_policy fixture (merged over the stock config).")
    parser.addini("helpdesk_policy_engine", "Engine of the helpdesk_policy fixture: auto, native, compiled, rego or opa.",
                  default="auto")
    parser.addini("helpdesk_policy_dir", "Policy directory of the helpdesk_policy fixture (relative to rootdir).",
                  default="")
    parser.addini("helpdesk_policy_config", "Policy config file of the helpdesk_policy fixture (relative to rootdir).",
                  default="")


def _setting(config: pytest.Config, name: str) -> tuple[str | None, Path | None]:
    """A setting's value and the directory a relative path in it is relative to."""
    value = config.getoption(name)
    if value:
        return str(value), config.invocation_params.dir
    ini = config.getini(name)
    if ini:
        return str(ini), config.rootpath
    return None, None


def _path(config: pytest.Config, name: str) -> Path | None:
    value, base = _setting(config, name)
    if value is None:
        return None
    p = Path(value)
    return p if p.is_absolute() or base is None else base / p


@pytest.fixture(scope="session")
def helpdesk_policy(pytestconfig: pytest.Config) -> Iterator[HelpdeskPolicy]:
    """A :class:`~helpdesk_policy.facade.HelpdeskPolicy` shared by the session."""
    from .facade import HelpdeskPolicy

    engine, _ = _setting(pytestconfig, "helpdesk_policy_engine")
    engine = engine or "auto"
    if engine not in _ENGINES:
        raise pytest.UsageError(f"helpdesk_policy_engine = {engine!r}: choose one of {', '.join(_ENGINES)}")
    policy = HelpdeskPolicy(engine=engine, policy_dir=_path(pytestconfig, "helpdesk_policy_dir"),
                            config=_path(pytestconfig, "helpdesk_policy_config"))
    try:
        yield policy
    finally:
        policy.close()


@pytest.fixture(scope="session")
def decision_for(helpdesk_policy: HelpdeskPolicy) -> Callable[[Request | Mapping[str, Any]], Decision]:
    """``decision_for(request) -> Decision`` with the session's policy (dict or Request)."""

    def decide(request: Request | Mapping[str, Any]) -> Decision:
        return helpdesk_policy.decide(request)

    return decide


def __getattr__(name: str) -> Any:
    # PEP 562: ``from helpdesk_policy.pytest_plugin import assert_decision``
    # works without importing pydantic when the plugin is merely loaded.
    if name == "assert_decision":
        from .expectations import assert_decision

        return assert_decision
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
