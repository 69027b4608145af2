"""``helpdesk-policy bundle build`` and ``bundle verify``: OPA bundles from the command line.

The library side (building, signing, verifying and loading bundles) is
:mod:`helpdesk_policy.bundle`; this module only reads the options, the key
files, and reports. ``bundle`` is a :class:`click.Group`, attached to the main
group with ``main.add_command(bundle)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..bundle import SIGNING_ALGORITHMS, BundleInfo, build_bundle, is_pem, read_key, verify_bundle
from ..errors import BundleVerificationError, HelpdeskPolicyError
from ..policyset import PolicySet
from .errors import CliError

__all__ = ["bundle", "build_command", "verify_command", "EXIT_UNVERIFIED", "EXIT_INVALID", "EXIT_MISSING_EXTRA"]

#: Exit codes, as in :mod:`helpdesk_policy.cli.decide`.
EXIT_UNVERIFIED = 1
EXIT_INVALID = 2
EXIT_MISSING_EXTRA = 3


_SIGNING_KEY_ENV = "HELPDESK_POLICY_SIGNING_KEY"
_VERIFICATION_KEY_ENV = "HELPDESK_POLICY_VERIFICATION_KEY"


def _cli_key(value: str | None, option: str, envvar: str) -> bytes | None:
    """A key option's key: the option (or its environment variable) names a file that must exist.

    Never the value itself: a mistyped path would otherwise become the HMAC
    secret, known to anyone who reads the command line.
    """
    if value is None:
        return None
    if not Path(value).is_file():
        # Not shown: it may be a secret given where a file name belongs.
        raise CliError(f"{option} (or ${envvar}) must name an existing file holding the key; "
                       "it does not (the value is not shown)", EXIT_INVALID)
    return read_key(Path(value), option.removeprefix("--").replace("-", " "))


def _fail(exc: HelpdeskPolicyError) -> CliError:
    if isinstance(exc, BundleVerificationError):
        return CliError(f"bundle verification failed: {exc}", EXIT_UNVERIFIED)
    if "pip install" in str(exc):
        return CliError(str(exc), EXIT_MISSING_EXTRA)
    return CliError(str(exc), EXIT_INVALID)


@click.group("bundle")
def bundle() -> None:
    """Build and verify OPA bundles of the policies."""


@bundle.command("build")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The bundle to write (tar.gz).")
@click.option("--policy-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Policy directory (default: the stock policies).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file merged over the stock config.")
@click.option("--signing-key", envvar=_SIGNING_KEY_ENV, default=None, metavar="FILE",
              help="Sign with the key in FILE: a PEM RSA private key (RS256), or an HMAC secret of at least "
                   f"32 bytes (HS256; one trailing newline is dropped). Also ${_SIGNING_KEY_ENV} (a file name).")
@click.option("--signing-alg", type=click.Choice(SIGNING_ALGORITHMS), default=None,
              help="Signature algorithm (default: RS256 for a PEM key, else HS256).")
@click.option("--key-id", default=None, help="Key id OPA uses to pick the verification key.")
@click.option("--scope", default=None, help="Optional scope claim.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build_command(
    output: Path, policy_dir: Path | None, config_file: Path | None, signing_key: str | None,
    signing_alg: str | None, key_id: str | None, scope: str | None, as_json: bool,
) -> None:
    """Write the policies and config as an OPA bundle.

    Its manifest revision equals the policy_revision the engines report.
    Serve it with: opa run --server --bundle BUNDLE
    """
    try:
        policy_set = PolicySet.load(policy_dir, config_file)
        key = _cli_key(signing_key, "--signing-key", _SIGNING_KEY_ENV)
        alg = signing_alg or ("RS256" if key is not None and is_pem(key) else "HS256")
        info = build_bundle(policy_set, output, signing_key=key, alg=alg, key_id=key_id, scope=scope)
    except HelpdeskPolicyError as exc:
        raise _fail(exc) from None
    _report(info, as_json, "wrote")


@bundle.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--verification-key", envvar=_VERIFICATION_KEY_ENV, default=None, metavar="FILE",
              help="Verify with the key in FILE: a PEM public key or certificate (RS256), or the HMAC secret of "
                   f"at least 32 bytes (HS256; one trailing newline is dropped). Also ${_VERIFICATION_KEY_ENV} "
                   "(a file name).")
@click.option("--verification-alg", type=click.Choice(SIGNING_ALGORITHMS), default=None,
              help="Signature algorithm (default: RS256 for a PEM key, else HS256).")
@click.option("--key-id", default=None, help="Expected key id: the signature must carry it.")
@click.option("--scope", default=None, help="Expected scope claim.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(
    file: Path, verification_key: str | None, verification_alg: str | None, key_id: str | None,
    scope: str | None, as_json: bool,
) -> None:
    """Check a bundle: manifest, signature and file digests, and that its
    revision matches its own policies and config.

    Exit status: 0 verified, 1 verification failed, 2 unreadable or bad usage,
    3 a missing extra (pyjwt for signed bundles).
    """
    try:
        key = _cli_key(verification_key, "--verification-key", _VERIFICATION_KEY_ENV)
        info = verify_bundle(file, key=key, alg=verification_alg, key_id=key_id, scope=scope)
    except HelpdeskPolicyError as exc:
        raise _fail(exc) from None
    _report(info, as_json, "verified")


def _report(info: BundleInfo, as_json: bool, verb: str) -> None:
    if as_json:
        click.echo(json.dumps(info.to_dict(), indent=2))
        return
    signed = f"signed {info.algorithm}" + (f" key id {info.key_id}" if info.key_id else "") if info.signed else "unsigned"
    click.echo(f"{verb} {info.path}: revision {info.revision}, {len(info.files)} files, {signed}, sha256 {info.sha256}")
