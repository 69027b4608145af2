"""Shared fixtures and hypothesis profiles.

Profiles: ``ci`` (default: enough examples to mean something, bounded run time)
and ``thorough`` (``HYPOTHESIS_PROFILE=thorough``: many more, for on-demand runs).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

# No "explain" phase: it re-runs a failing example under sys.settrace, which
# through the engines and the thread pools takes minutes and gigabytes before
# the failure is shown. A failure is reported with its minimal example instead.
_PHASES = tuple(p for p in Phase if p is not Phase.explain)

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow], phases=_PHASES,
)
settings.register_profile(
    "thorough", max_examples=5000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow], phases=_PHASES,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def policy_set():
    from helpdesk_policy.policyset import PolicySet

    return PolicySet.load()


@pytest.fixture(scope="session")
def custom_policy_dir(tmp_path_factory: pytest.TempPathFactory):
    """A copy of the stock policies with one comment added: a custom policy set.
    The native mirror refuses to stand in for it, so when every engine fails
    nothing can decide and the facade answers its strict level."""
    import shutil

    from helpdesk_policy.resources import stock_policy_dir

    target = tmp_path_factory.mktemp("custom") / "policies"
    shutil.copytree(stock_policy_dir(), target)
    common = target / "helpdesk" / "common.rego"
    common.write_text(common.read_text(encoding="utf-8") + "\n# our organisation's copy\n", encoding="utf-8")
    return target


# --------------------------------------------------------------------------
# Example counters: property and differential tests record how many examples
# they ran (``example_counts["parity/stock"] += 1``); the totals are printed in
# the terminal summary, so a CI log shows what "passed" covered.

from collections import Counter  # noqa: E402

_EXAMPLE_COUNTS = pytest.StashKey[Counter]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_EXAMPLE_COUNTS] = Counter()


@pytest.fixture(scope="session")
def example_counts(request: pytest.FixtureRequest) -> Counter:
    """A session-wide ``Counter`` of examples run, keyed by test area."""
    return request.config.stash[_EXAMPLE_COUNTS]


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # noqa: ANN001
    counts = config.stash.get(_EXAMPLE_COUNTS, None)
    if not counts:
        return
    profile = settings.get_current_profile_name()
    terminalreporter.section(f"examples run (hypothesis profile {profile!r})")
    for key, n in sorted(counts.items()):
        terminalreporter.write_line(f"{n:>8}  {key}")
