"""The pytest plugin: harmless when unused, useful when used.

Each run is a real pytest subprocess (``runpytest_subprocess``): the plugin is
loaded the way a user's environment loads it, and this process's imports and
warning filters do not leak into it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "helpdesk_policy.pytest_plugin"


def _entry_point_installed() -> bool:
    return any(ep.name == "helpdesk_policy" and ep.value == PLUGIN for ep in entry_points(group="pytest11"))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only this plugin, loaded explicitly: other installed plugins (asyncio,
    # hypothesis) and their warnings stay out of these runs.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def plugin_args() -> list[str]:
    return ["-p", PLUGIN]


REQUEST = {
    "request": {"id": "T-1", "action": "mfa_reset", "channel": "phone"},
    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": False, "auth_strength": "none"},
    "target": {"id": "u-1", "type": "human", "privileged": True, "privilege_tier": 2, "vip": False, "status": "active"},
}


def test_plugin_import_is_light() -> None:
    # Loading the plugin (what every pytest run in the environment does) adds
    # only the plugin module beyond the package itself: no regopy, no
    # hypothesis, no engine, no further pydantic models.
    code = (
        "import sys, time, json\n"
        "import pytest, helpdesk_policy\n"
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        f"import {PLUGIN}\n"
        "cost = time.perf_counter() - t\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('regopy', 'hypothesis'))\n"
        "print(json.dumps({'new': sorted(set(sys.modules) - before), 'heavy': heavy, 'cost': cost}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["new"] == [PLUGIN]
    assert doc["heavy"] == []
    assert doc["cost"] < 0.05, f"importing the plugin module took {doc['cost'] * 1000:.1f} ms"


def test_plain_test_run_is_unaffected(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\naddopts = --strict-markers --strict-config\n")
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess(*plugin_args(), "-q")
    result.assert_outcomes(passed=1)
    # The plugin never imported an engine in a run that did not ask for one.
    pytester.makeconftest(
        "import sys\n"
        "heavy = ('regopy', 'hypothesis', 'helpdesk_policy.engines.rego', 'helpdesk_policy.engines.native',\n"
        "         'helpdesk_policy.expectations', 'helpdesk_policy.ci.suites')\n"
        "def pytest_sessionfinish(session):\n"
        "    loaded = [m for m in heavy if m in sys.modules]\n"
        "    print('LOADED', loaded)\n"
    )
    result = pytester.runpytest_subprocess(*plugin_args(), "-q", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*LOADED []*"])


def test_fixtures_work(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_uses=f"""
        from helpdesk_policy.pytest_plugin import assert_decision
        from helpdesk_policy import HelpdeskPolicy

        REQUEST = {REQUEST!r}

        def test_fixture_is_a_policy(helpdesk_policy):
            assert isinstance(helpdesk_policy, HelpdeskPolicy)
            assert helpdesk_policy.engine_names == ["native"]

        def test_decision_for(decision_for):
            d = decision_for(REQUEST)
            assert d.engine == "native"
            assert_decision(d, level="callback", allowed=True,
                            reasons=["privileged_remote_recovery",
                                     {{"code": "privileged_target", "level": "callback"}}],
                            # policy v2: the lost factor is revoked at once
                            obligations=[{{"code": "revoke_previous_credential", "within_hours": 0}}],
                            obligations_absent=["time_bound_access"])
    """)
    result = pytester.runpytest_subprocess(*plugin_args(), "-q", "--helpdesk-policy-engine", "native")
    result.assert_outcomes(passed=2)


def test_ini_options(pytester: pytest.Pytester) -> None:
    (pytester.path / "cfg.yaml").write_text("vip_level: callback\n", encoding="utf-8")
    pytester.makeini("[pytest]\nhelpdesk_policy_engine = native\nhelpdesk_policy_config = cfg.yaml\n")
    pytester.makepyfile(test_ini="""
        def test_engine_and_config_from_ini(helpdesk_policy):
            assert helpdesk_policy.engine_names == ["native"]
            assert helpdesk_policy.config.vip_level.value == "callback"
    """)
    result = pytester.runpytest_subprocess(*plugin_args(), "-q")
    result.assert_outcomes(passed=1)


def test_failing_assert_decision_shows_a_readable_diff(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fails=f"""
        from helpdesk_policy.pytest_plugin import assert_decision

        def test_wrong_expectation(decision_for):
            d = decision_for({REQUEST!r})
            assert_decision(d, level="step_up", reasons=["vip_target"],
                            reasons_absent=["privileged_remote_recovery"],
                            obligations=["time_bound_access"])
    """)
    result = pytester.runpytest_subprocess(*plugin_args(), "-q", "--helpdesk-policy-engine", "native")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: decision does not match the expectation:",
        "*level: expected step_up, got callback",
        "*reason missing: vip_target",
        "*reason unexpected: privileged_remote_recovery [[]callback[]]: Recovery of a privileged account*",
        "*obligation missing: time_bound_access",
        "*actual decision:",
        "*level: callback (allowed)",
    ])
    # The traceback points at the test, not inside the helper.
    assert "expectations.py" not in result.stdout.str()


def test_ranges_and_strategies_a_users_suite_writes(pytester: pytest.Pytester) -> None:
    # What the README shows a user: a range where guidance sets a floor, and the
    # strategies' section form for the fields of one section.
    pytester.makepyfile(test_org=f"""
        from hypothesis import given, settings, strategies as st
        from helpdesk_policy.pytest_plugin import assert_decision
        from helpdesk_policy.testing import requests

        def test_floor(decision_for):
            assert_decision(decision_for({REQUEST!r}), level_at_least="manager_approval")

        def test_ceiling_fails_readably(decision_for):
            assert_decision(decision_for({REQUEST!r}), level_at_most="step_up")

        @settings(max_examples=25, deadline=None)
        @given(requests(action="mfa_reset", channel="phone",
                        target={{"type": "human", "privileged": True, "privilege_tier": st.integers(1, 9)}}))
        def test_privileged_phone_recovery(decision_for, req):
            assert req.target.privileged and req.target.privilege_tier >= 1
            assert_decision(decision_for(req), level_at_least="callback")
    """)
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "hypothesis", "-q",
                                           "--helpdesk-policy-engine", "native")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*level: expected in [[]self_service, step_up[]], got callback"])


def test_bad_engine_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(*plugin_args(), "--helpdesk-policy-engine", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid choice: 'nope'*"])


@pytest.mark.skipif(not _entry_point_installed(), reason="the pytest11 entry point is not installed here")
def test_entry_point_loads_the_plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    pytester.makepyfile(test_auto="def test_auto(decision_for):\n    assert callable(decision_for)\n")
    result = pytester.runpytest_subprocess("-q", "-p", "no:asyncio")
    result.assert_outcomes(passed=1)
    # And it can be switched off by its entry-point name.
    off = pytester.runpytest_subprocess("-q", "-p", "no:asyncio", "-p", "no:helpdesk_policy")
    off.assert_outcomes(errors=1)
