"""The wheel carries the Rego policies and config, and works without the repo."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    (whl,) = out.glob("helpdesk_policy-*.whl")
    return whl


def test_wheel_ships_policies_config_and_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    stock = ROOT / "src" / "helpdesk_policy" / "policies"
    # The Rego, the config, the reason catalogue and every suite (guidance corpus included).
    shipped = [p for p in stock.rglob("*") if p.is_file() and p.suffix in {".rego", ".yaml"}]
    expected = {f"helpdesk_policy/policies/{p.relative_to(stock).as_posix()}" for p in shipped}
    assert expected and expected <= names
    assert {"helpdesk_policy/policies/config.yaml", "helpdesk_policy/policies/reasons.yaml"} <= names
    assert any(n.startswith("helpdesk_policy/policies/tests/guidance/") for n in names)
    assert "helpdesk_policy/py.typed" in names
    # The ticketing mappings load_mapping() finds by name.
    mappings = ROOT / "src" / "helpdesk_policy" / "integrations" / "mappings"
    shipped_mappings = {f"helpdesk_policy/integrations/mappings/{p.name}" for p in mappings.glob("*.yaml")}
    assert len(shipped_mappings) == 4 and shipped_mappings <= names
    # The Rego compiler's grammar (read with importlib.resources on the first parse).
    assert "helpdesk_policy/compiler/rego.lark" in names


def test_installed_wheel_decides_without_the_repo(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import helpdesk_policy, sys;"
        "from helpdesk_policy import HelpdeskPolicy;"
        "assert 'site' in helpdesk_policy.__file__, helpdesk_policy.__file__;"
        "r = {'request': {'id': 'r', 'action': 'mfa_reset', 'channel': 'phone'},"
        " 'actor': {'id': 'u', 'type': 'human', 'relationship': 'self', 'authenticated': False, 'auth_strength': 'none'},"
        " 'target': {'id': 'u', 'type': 'human', 'privileged': True, 'privilege_tier': 2, 'vip': False, 'status': 'active'}};"
        "d = HelpdeskPolicy(engine='rego').decide(r);"
        "print(d.level.value, d.engine, d.degraded);"
        "from helpdesk_policy.integrations import SHIPPED_MAPPINGS, load_mapping;"
        "print(len([load_mapping(n) for n in SHIPPED_MAPPINGS]));"
        "c = HelpdeskPolicy(engine='compiled').decide(r);"
        "print(c.level.value, c.engine)"
    )
    # Run from an unrelated directory with only the unpacked wheel (plus the venv's
    # dependencies) importable, so the repo's src/ cannot be what is found.
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    # The compiled engine parses the shipped Rego with the shipped grammar.
    assert out.stdout.split() == ["callback", "rego", "False", "4", "callback", "compiled"]


def test_importing_the_package_is_lazy() -> None:
    """The pytest plugin's entry point imports the package in every pytest run:
    that must not pull in pydantic, the engines or the models."""
    code = (
        "import sys, helpdesk_policy; "
        "heavy = [m for m in ('pydantic', 'helpdesk_policy.models', 'helpdesk_policy.facade', 'regopy') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "from helpdesk_policy import HelpdeskPolicy, Level; "
        "assert 'helpdesk_policy.facade' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_public_name_resolves() -> None:
    import helpdesk_policy

    for name in helpdesk_policy.__all__:
        assert getattr(helpdesk_policy, name) is not None, name
    assert set(helpdesk_policy.__all__) == {*helpdesk_policy._EXPORTS, "__version__"}
    with pytest.raises(AttributeError, match="no_such_name"):
        helpdesk_policy.no_such_name  # noqa: B018
