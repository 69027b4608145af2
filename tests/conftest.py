"""Shared fixtures and hypothesis profiles.

Profiles: ``ci`` (default: enough examples to mean something, bounded run time)
and ``thorough`` (``HYPOTHESIS_PROFILE=thorough``: many more, for on-demand runs).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=False, print_blob=True,
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
