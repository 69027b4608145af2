"""Shared fixtures and hypothesis profiles.

Profiles: ``ci`` (default: enough examples to mean something, bounded run time)
and ``thorough`` (``HYPOTHESIS_PROFILE=thorough``: many more, for on-demand runs).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=5000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def policy_set():
    from helpdesk_policy.policies import PolicySet

    return PolicySet.load()


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
