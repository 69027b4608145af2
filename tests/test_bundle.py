"""OPA bundles: build (deterministic), sign (HS256/RS256), verify (tampering, keys), load, CLI."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy, parse_request
from helpdesk_policy.bundle import (
    CATALOGUE_DATA_PATH,
    CONFIG_DATA_PATH,
    MANIFEST,
    BundleError,
    BundleVerificationError,
    build_bundle,
    canonical_json,
    file_hash,
    load_bundle,
    read_bundle_files,
    verify_bundle,
)
from helpdesk_policy.cli.bundle import bundle
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir

pytest.importorskip("jwt", reason="signing needs the 'bundle' extra (pyjwt)")

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"an-hmac-secret-of-at-least-32-bytes!"
OTHER_SECRET = b"another-hmac-secret-at-least-32-bytes"


@pytest.fixture(scope="module")
def policy_set() -> PolicySet:
    return PolicySet.load()


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("signer", "stranger"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = d / f"{name}.pem"
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        public = d / f"{name}.pub.pem"
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
        out[name] = private
        out[f"{name}.pub"] = public
    return out


def _rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """Copy a bundle, replacing (bytes), adding, or dropping (None) files by name."""
    files = read_bundle_files(src)
    for name, content in change.items():
        if content is None:
            files.pop(name, None)
        else:
            files[name] = content
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dst.write_bytes(raw.getvalue())
    return dst


# -------------------------------------------------------------------- building


def test_revision_equals_the_embedded_engines_revision(policy_set: PolicySet, tmp_path: Path) -> None:
    info = build_bundle(policy_set, tmp_path / "b.tar.gz")
    assert info.revision == HelpdeskPolicy(engine="rego").policy_revision == policy_set.revision
    manifest = json.loads(read_bundle_files(info.path)[MANIFEST])
    assert manifest == {"revision": policy_set.revision, "roots": ["helpdesk"], "rego_version": 1}

    config = tmp_path / "tuned.yaml"
    config.write_text("callback_tier: 3\nnhi_wide_consumers: 25\n")
    tuned = PolicySet.load(None, config)
    info = build_bundle(tuned, tmp_path / "tuned.tar.gz")
    assert info.revision == HelpdeskPolicy(engine="rego", config=config).policy_revision != policy_set.revision
    assert verify_bundle(info.path).revision == info.revision


def test_contents_layout_and_no_tests(policy_set: PolicySet, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(stock_policy_dir(), policies)
    (policies / "helpdesk" / "decision_test.rego").write_text(
        "package helpdesk_test\n\nimport rego.v1\n\ntest_x if { true }\n"
    )
    ps = PolicySet.load(policies)
    info = build_bundle(ps, tmp_path / "b.tar.gz")
    with tarfile.open(info.path) as tar:
        names = tar.getnames()
        members = tar.getmembers()
    assert names == sorted(names) and all(n.startswith("/") for n in names)  # sorted, OPA-style paths
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.mode == 0o644 for m in members)
    files = read_bundle_files(info.path)
    assert not any(n.endswith("_test.rego") for n in files)
    assert {n for n in files if n.endswith(".rego")} == set(ps.modules)
    assert json.loads(files[CONFIG_DATA_PATH]) == ps.config.to_data()
    assert json.loads(files[CATALOGUE_DATA_PATH]) == ps.catalogue.to_data()
    assert info.revision == ps.revision and info.signed is False


def test_builds_are_byte_for_byte_deterministic(policy_set: PolicySet, tmp_path: Path, rsa_keys: dict[str, Path]) -> None:
    for kwargs in ({}, {"signing_key": SECRET, "key_id": "ci"},
                   {"signing_key": rsa_keys["signer"], "alg": "RS256", "key_id": "ci"}):
        a = build_bundle(policy_set, tmp_path / "a.tar.gz", **kwargs)
        b = build_bundle(PolicySet.load(), tmp_path / "b.tar.gz", **kwargs)
        assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
        assert a.sha256 == b.sha256 == hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest()


def test_modules_outside_the_roots_are_refused(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(stock_policy_dir(), policies)
    (policies / "other.rego").write_text("package elsewhere\n\nx := 1\n")
    with pytest.raises(BundleError, match="outside the bundle roots"):
        build_bundle(PolicySet.load(policies), tmp_path / "b.tar.gz")


# ------------------------------------------------------------------- verifying


def test_unsigned_bundle_detects_tampered_policy_and_config(policy_set: PolicySet, tmp_path: Path) -> None:
    info = build_bundle(policy_set, tmp_path / "b.tar.gz")
    assert verify_bundle(info.path).revision == policy_set.revision
    files = read_bundle_files(info.path)
    rego = files["helpdesk/baseline.rego"] + b"\n# harmless-looking edit\n"
    with pytest.raises(BundleVerificationError, match="revision mismatch"):
        verify_bundle(_rewrite(info.path, tmp_path / "t1.tar.gz", {"helpdesk/baseline.rego": rego}))
    config = json.loads(files[CONFIG_DATA_PATH])
    config["callback_tier"] = 9
    with pytest.raises(BundleVerificationError, match="revision mismatch"):
        verify_bundle(_rewrite(info.path, tmp_path / "t2.tar.gz", {CONFIG_DATA_PATH: json.dumps(config).encode()}))
    with pytest.raises(BundleVerificationError, match="no .manifest"):
        verify_bundle(_rewrite(info.path, tmp_path / "t3.tar.gz", {MANIFEST: None}))
    # Rewording a reason is a policy change: the catalogue is part of the revision.
    catalogue = json.loads(files[CATALOGUE_DATA_PATH])
    catalogue["reasons"]["action_baseline"]["message"] = "%v starts at %v; nothing else matters."
    with pytest.raises(BundleVerificationError, match="revision mismatch"):
        verify_bundle(_rewrite(info.path, tmp_path / "t4.tar.gz",
                               {CATALOGUE_DATA_PATH: json.dumps(catalogue).encode()}))


@pytest.mark.parametrize("alg", ["HS256", "RS256"])
def test_signed_bundle_verifies_and_rejects_tampering(alg: str, policy_set: PolicySet, tmp_path: Path, rsa_keys: dict[str, Path]) -> None:
    sign_key: Any = SECRET if alg == "HS256" else rsa_keys["signer"]
    verify_key: Any = SECRET if alg == "HS256" else rsa_keys["signer.pub"]
    info = build_bundle(policy_set, tmp_path / "s.tar.gz", signing_key=sign_key, alg=alg, key_id="prod-1")
    checked = verify_bundle(info.path, key=verify_key, key_id="prod-1")
    assert (checked.signed, checked.algorithm, checked.key_id) == (True, alg, "prod-1")
    assert checked.revision == policy_set.revision
    if alg == "RS256":  # a private key or a certificate works for verification too
        assert verify_bundle(info.path, key=rsa_keys["signer"]).signed

    files = read_bundle_files(info.path)
    tampered_rego = files["helpdesk/risk.rego"].replace(b"callback", b"step_up", 1)
    with pytest.raises(BundleVerificationError, match="digest mismatch"):
        verify_bundle(_rewrite(info.path, tmp_path / "t1.tar.gz", {"helpdesk/risk.rego": tampered_rego}), key=verify_key)
    config = json.loads(files[CONFIG_DATA_PATH])
    config["max_secret_age_days"] = 3650
    with pytest.raises(BundleVerificationError, match="digest mismatch"):
        verify_bundle(_rewrite(info.path, tmp_path / "t2.tar.gz", {CONFIG_DATA_PATH: json.dumps(config).encode()}),
                      key=verify_key)
    with pytest.raises(BundleVerificationError, match="not included in bundle signature"):
        verify_bundle(_rewrite(info.path, tmp_path / "t3.tar.gz", {"helpdesk/extra.rego": b"package helpdesk.extra\n"}),
                      key=verify_key)
    with pytest.raises(BundleVerificationError, match="not found in the target bundle"):
        verify_bundle(_rewrite(info.path, tmp_path / "t4.tar.gz", {"helpdesk/nhi.rego": None}), key=verify_key)
    with pytest.raises(BundleVerificationError, match="key id 'prod-1', not 'prod-2'"):
        verify_bundle(info.path, key=verify_key, key_id="prod-2")


def test_structured_files_are_hashed_canonically(policy_set: PolicySet, tmp_path: Path) -> None:
    # OPA hashes data.json/.manifest in canonical form: reformatting (indentation,
    # key order) keeps the signature valid; changing a value does not.
    info = build_bundle(policy_set, tmp_path / "s.tar.gz", signing_key=SECRET)
    files = read_bundle_files(info.path)
    config = json.loads(files[CONFIG_DATA_PATH])
    reordered = json.dumps(dict(reversed(list(config.items()))), separators=(",", ":")).encode()
    manifest = b'{ "rego_version":1,"roots":["helpdesk"],  "revision":"' + policy_set.revision.encode() + b'"}'
    same = _rewrite(info.path, tmp_path / "same.tar.gz", {CONFIG_DATA_PATH: reordered, MANIFEST: manifest})
    assert verify_bundle(same, key=SECRET).revision == policy_set.revision


def test_wrong_keys_and_algorithm_confusion_fail(policy_set: PolicySet, tmp_path: Path, rsa_keys: dict[str, Path]) -> None:
    hs = build_bundle(policy_set, tmp_path / "hs.tar.gz", signing_key=SECRET)
    with pytest.raises(BundleVerificationError, match="bad bundle signature"):
        verify_bundle(hs.path, key=OTHER_SECRET)
    rs = build_bundle(policy_set, tmp_path / "rs.tar.gz", signing_key=rsa_keys["signer"], alg="RS256")
    with pytest.raises(BundleVerificationError, match="bad bundle signature"):
        verify_bundle(rs.path, key=rsa_keys["stranger.pub"])
    # The public key used as an HMAC secret (the classic JWT confusion) is refused.
    with pytest.raises(BundleVerificationError, match="not a PEM key"):
        verify_bundle(rs.path, key=rsa_keys["signer.pub"], alg="HS256")
    with pytest.raises(BundleVerificationError, match="bad bundle signature"):
        verify_bundle(hs.path, key=rsa_keys["signer.pub"])  # HS256 token, RS256 expected from the PEM key
    with pytest.raises(BundleVerificationError, match="give the verification key"):
        verify_bundle(hs.path)
    unsigned = build_bundle(policy_set, tmp_path / "u.tar.gz")
    with pytest.raises(BundleVerificationError, match="not signed"):
        verify_bundle(unsigned.path, key=SECRET)


def test_scope_semantics_follow_opa(policy_set: PolicySet, tmp_path: Path) -> None:
    info = build_bundle(policy_set, tmp_path / "s.tar.gz", signing_key=SECRET, scope="write")
    assert verify_bundle(info.path, key=SECRET, scope="write").scope == "write"
    with pytest.raises(BundleVerificationError, match="scope mismatch"):
        verify_bundle(info.path, key=SECRET)


def test_bad_signing_input_is_refused(policy_set: PolicySet, tmp_path: Path, rsa_keys: dict[str, Path]) -> None:
    with pytest.raises(BundleError, match="at least 32 bytes"):
        build_bundle(policy_set, tmp_path / "b.tar.gz", signing_key=b"short")
    with pytest.raises(BundleError, match="not a PEM key"):
        build_bundle(policy_set, tmp_path / "b.tar.gz", signing_key=rsa_keys["signer"], alg="HS256")
    with pytest.raises(BundleError, match="RSA private key"):
        build_bundle(policy_set, tmp_path / "b.tar.gz", signing_key=SECRET, alg="RS256")
    with pytest.raises(BundleError, match="unsupported signing algorithm"):
        build_bundle(policy_set, tmp_path / "b.tar.gz", signing_key=SECRET, alg="none")
    with pytest.raises(BundleError, match="without a signing key"):
        build_bundle(policy_set, tmp_path / "b.tar.gz", key_id="x")


def test_unsafe_archives_are_refused(tmp_path: Path) -> None:
    for name, make in (
        ("escape", lambda tar: _add(tar, "../../etc/evil.rego", b"package helpdesk\n")),
        ("link", lambda tar: tar.addfile(_link("helpdesk/x.rego"))),
    ):
        path = tmp_path / f"{name}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            make(tar)
        with pytest.raises(BundleError, match="unsafe path|not a regular file"):
            verify_bundle(path)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(BundleError, match="cannot read bundle"):
        verify_bundle(tmp_path / "junk.tar.gz")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    return info


def test_missing_pyjwt_names_the_extra(policy_set: PolicySet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(BundleError, match=r"helpdesk-policy\[bundle\]"):
        build_bundle(policy_set, tmp_path / "b.tar.gz", signing_key=SECRET)
    assert build_bundle(policy_set, tmp_path / "u.tar.gz").signed is False  # unsigned needs no pyjwt


# --------------------------------------------------------- OPA's canonical hashing


def test_canonical_hash_matches_opas_test_vector() -> None:
    # From OPA's v1/bundle/verify_test.go: the MD5 of .manifest {"revision": "quickbrownfaux"}.
    assert file_hash(".manifest", b'{"revision": "quickbrownfaux"}', "MD5") == "a005c38a509dc2d5a7407b9494efb2ad"


def test_canonical_json_is_gos_compact_sorted_encoding_without_html_escaping() -> None:
    # OPA's hash_test.go: the structural hash equals the hash of Go's compact,
    # key-sorted JSON, numbers kept as written, HTML characters not escaped.
    doc = b'{"key2": {"c": 123.45678911111111111111111111111111111111111111111111111, "b": 1, "a": 0},\n' \
          b' "key1": ["element1", "element2"], "h": "<foo></foo> & \xe2\x84\xa2 \xe2\x80\xa8", "n": null, "t": true}'
    expected = ('{"h":"<foo></foo> & \u2122 \\u2028","key1":["element1","element2"],'
                '"key2":{"a":0,"b":1,"c":123.45678911111111111111111111111111111111111111111111111},"n":null,"t":true}')
    from helpdesk_policy.bundle import _parse_json

    assert canonical_json(_parse_json(doc, "data.json")) == expected
    assert file_hash("x/data.json", doc) == hashlib.sha256(expected.encode()).hexdigest()
    assert file_hash("x/policy.rego", doc) == hashlib.sha256(doc).hexdigest()  # unstructured: raw bytes


# ---------------------------------------------------------------------- loading


def test_load_bundle_gives_an_evaluable_policy_set(policy_set: PolicySet, tmp_path: Path) -> None:
    from helpdesk_policy.engines.rego import RegoEngine

    info = build_bundle(policy_set, tmp_path / "b.tar.gz", signing_key=SECRET)
    loaded = load_bundle(info.path, key=SECRET)
    assert loaded.revision == loaded.policy_set.revision == policy_set.revision
    assert loaded.modules == policy_set.modules
    # The config and the reason catalogue (messages and refs, read as data.helpdesk.catalogue).
    assert loaded.data == policy_set.data() == {
        "helpdesk": {"config": policy_set.config.to_data(), "catalogue": policy_set.catalogue.to_data()}}
    assert loaded.policy_set.catalogue == policy_set.catalogue
    doc = json.loads((ROOT / "examples" / "requests" / "02-phone-mfa-reset-admin.json").read_text())
    req = parse_request(doc)
    assert RegoEngine(loaded.policy_set).evaluate(req) == RegoEngine(policy_set).evaluate(req)


# -------------------------------------------------------------------------- CLI


def test_cli_build_and_verify(tmp_path: Path, rsa_keys: dict[str, Path], policy_set: PolicySet) -> None:
    runner = CliRunner()
    out = tmp_path / "bundle.tar.gz"
    result = runner.invoke(bundle, ["build", "-o", str(out), "--signing-key", str(rsa_keys["signer"]),
                                    "--key-id", "k1", "--json"])
    assert result.exit_code == 0, result.output
    built = json.loads(result.output)
    assert (built["revision"], built["algorithm"], built["key_id"]) == (policy_set.revision, "RS256", "k1")

    result = runner.invoke(bundle, ["verify", str(out), "--verification-key", str(rsa_keys["signer.pub"])])
    assert result.exit_code == 0, result.output
    assert "verified" in result.output and policy_set.revision in result.output and "signed RS256" in result.output

    result = runner.invoke(bundle, ["verify", str(out), "--verification-key", str(rsa_keys["stranger.pub"])])
    assert result.exit_code == 1 and "verification failed" in result.output

    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")  # an echo'd file: the newline is not part of the secret
    hs = tmp_path / "hs.tar.gz"
    assert runner.invoke(bundle, ["build", "-o", str(hs), "--signing-key", str(secret_file)]).exit_code == 0
    assert verify_bundle(hs, key=SECRET).algorithm == "HS256"
    result = runner.invoke(bundle, ["verify", str(hs)], env={"HELPDESK_POLICY_VERIFICATION_KEY": str(secret_file)})
    assert result.exit_code == 0, result.output

    config = tmp_path / "c.yaml"
    config.write_text("callback_tier: 4\n")
    plain = tmp_path / "plain.tar.gz"
    result = runner.invoke(bundle, ["build", "-o", str(plain), "--config", str(config)])
    assert result.exit_code == 0 and "unsigned" in result.output
    assert verify_bundle(plain).revision == PolicySet.load(None, config).revision

    result = runner.invoke(bundle, ["verify", str(tmp_path / "missing.tar.gz")])
    assert result.exit_code == 2 and "cannot read bundle" in result.output


def test_cli_errors_are_reported_like_every_other_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from helpdesk_policy.cli import main

    result = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path / "missing.tar.gz")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


# ------------------------------------------------------------------------- keys


def test_a_key_name_that_is_not_a_file_is_never_the_key(policy_set: PolicySet, tmp_path: Path) -> None:
    """A str or path names a key file that must exist; it never becomes the HMAC secret itself."""
    missing = str(tmp_path / "no-such-dir" / "verification-key-that-is-long-enough.pem")
    assert len(missing.encode()) >= 32  # long enough to pass for an HS256 secret
    forged = build_bundle(policy_set, tmp_path / "forged.tar.gz", signing_key=missing.encode())
    for key in (missing, Path(missing)):
        with pytest.raises(BundleError, match="verification key file") as caught:
            verify_bundle(forged.path, key=key)
        assert not isinstance(caught.value, BundleVerificationError) or "bad bundle signature" not in str(caught.value)
        with pytest.raises(BundleError, match="signing key file"):
            build_bundle(policy_set, tmp_path / "b.tar.gz", signing_key=key)
    # A str that is a secret, not a file name, is not echoed back.
    with pytest.raises(BundleError) as caught:
        verify_bundle(forged.path, key=SECRET.decode())
    assert SECRET.decode() not in str(caught.value)
    assert not (tmp_path / "b.tar.gz").exists()


def test_a_key_file_is_read_as_the_key(policy_set: PolicySet, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\r\n")  # one trailing newline is not part of the secret
    info = build_bundle(policy_set, tmp_path / "s.tar.gz", signing_key=str(secret_file))
    assert verify_bundle(info.path, key=SECRET).signed
    assert verify_bundle(info.path, key=secret_file).algorithm == "HS256"


@pytest.mark.parametrize("secret", [b"x", b"s" * 31])
def test_verify_refuses_a_short_hmac_secret(secret: bytes, policy_set: PolicySet, tmp_path: Path) -> None:
    # Signed with a short secret by another tool: a key that short can be brute-forced from the bundle.
    files = read_bundle_files(build_bundle(policy_set, tmp_path / "u.tar.gz").path)
    import jwt

    payload = {"files": [{"name": n, "hash": file_hash(n, c), "algorithm": "SHA-256"} for n, c in sorted(files.items())]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyjwt warns about short HMAC keys (newer versions only)
        token = jwt.encode(payload, secret, algorithm="HS256")
    signed = _rewrite(tmp_path / "u.tar.gz", tmp_path / "short.tar.gz",
                      {".signatures.json": json.dumps({"signatures": [token]}).encode()})
    with pytest.raises(BundleVerificationError, match="at least 32 bytes"):
        verify_bundle(signed, key=secret)


def test_key_id_is_enforced_when_given(policy_set: PolicySet, tmp_path: Path) -> None:
    no_kid = build_bundle(policy_set, tmp_path / "nokid.tar.gz", signing_key=SECRET)
    with pytest.raises(BundleVerificationError, match="carries no key id, expected 'prod-1'"):
        verify_bundle(no_kid.path, key=SECRET, key_id="prod-1")
    assert verify_bundle(no_kid.path, key=SECRET).key_id is None  # no key id asked: none needed
    other = build_bundle(policy_set, tmp_path / "other.tar.gz", signing_key=SECRET, key_id="test-1")
    with pytest.raises(BundleVerificationError, match="key id 'test-1', not 'prod-1'"):
        verify_bundle(other.path, key=SECRET, key_id="prod-1")
    assert verify_bundle(other.path, key=SECRET, key_id="test-1").key_id == "test-1"


def test_cli_key_options_name_files_that_must_exist(policy_set: PolicySet, tmp_path: Path) -> None:
    runner = CliRunner()
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    signed = tmp_path / "signed.tar.gz"
    # The attack: a bundle "signed" with the path string, verified with a missing key file.
    missing = str(tmp_path / "keys" / "verification-key-that-is-long-enough")
    build_bundle(policy_set, signed, signing_key=missing.encode())
    result = runner.invoke(bundle, ["verify", str(signed), "--verification-key", missing])
    assert result.exit_code == 2, result.output
    assert "--verification-key" in result.output and "must name an existing file" in result.output
    assert missing not in result.output and "verified" not in result.output

    result = runner.invoke(bundle, ["build", "-o", str(tmp_path / "b.tar.gz"), "--signing-key", missing])
    assert result.exit_code == 2 and "--signing-key" in result.output
    assert not (tmp_path / "b.tar.gz").exists()

    # A secret put in the environment variable (not a file name) is refused and never printed.
    result = runner.invoke(bundle, ["verify", str(signed)],
                           env={"HELPDESK_POLICY_VERIFICATION_KEY": SECRET.decode()})
    assert result.exit_code == 2 and SECRET.decode() not in result.output

    short = tmp_path / "short"
    short.write_bytes(b"k\n")
    result = runner.invoke(bundle, ["verify", str(signed), "--verification-key", str(short)])
    assert result.exit_code == 1 and "at least 32 bytes (got 1)" in result.output
    result = runner.invoke(bundle, ["build", "-o", str(tmp_path / "b.tar.gz"), "--signing-key", str(short)])
    assert result.exit_code == 2 and "at least 32 bytes" in result.output

    kid = tmp_path / "kid.tar.gz"
    assert runner.invoke(bundle, ["build", "-o", str(kid), "--signing-key", str(secret_file)]).exit_code == 0
    result = runner.invoke(bundle, ["verify", str(kid), "--verification-key", str(secret_file), "--key-id", "prod"])
    assert result.exit_code == 1 and "no key id" in result.output
    result = runner.invoke(bundle, ["verify", str(kid), "--verification-key", str(secret_file)])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------- hostile archives


def _peak_rss_kib() -> int:
    import re

    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


class _PeakRss:
    """Peak RSS growth (MiB) since :meth:`reset`, which clears VmHWM (Linux)."""

    def reset(self) -> None:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set size
        self.before = _peak_rss_kib()

    def growth(self) -> float:
        return (_peak_rss_kib() - self.before) / 1024


@pytest.fixture()
def peak_rss() -> _PeakRss:
    rss = _PeakRss()
    try:
        rss.reset()
    except OSError:
        pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs)")
    return rss


def _gzip_tar(path: Path, chunks: Any) -> Path:
    """Write raw tar bytes (an iterable of chunks) gzip-compressed, fast."""
    with gzip.GzipFile(path, "wb", compresslevel=1, mtime=0) as gz:
        for chunk in chunks:
            gz.write(chunk)
    return path


def _header(name: str, size: int, kind: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = kind
    return info.tobuf(tarfile.USTAR_FORMAT)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def test_a_huge_pax_header_is_refused_before_it_is_read(tmp_path: Path, peak_rss: _PeakRss) -> None:
    size = 192 * 1024 * 1024  # one PAX record of 192 MiB, ~200 KiB compressed
    prefix = f"{size} path=".encode()
    run = b"a" * (1 << 22)

    def chunks() -> Any:
        yield _header("././@PaxHeader", size, tarfile.XHDTYPE) + prefix
        left = size - len(prefix) - 1
        while left > 0:
            yield run[:left]
            left -= len(run)
        yield b"\n" + _pad(size)
        yield _header("helpdesk/x.rego", 0, tarfile.REGTYPE) + b"\0" * 1024

    bomb = _gzip_tar(tmp_path / "pax.tar.gz", chunks())
    assert bomb.stat().st_size < 2 * 1024 * 1024
    peak_rss.reset()
    start = time.perf_counter()
    with pytest.raises(BundleError, match=r"PAX or long-name header of \d+ bytes"):
        verify_bundle(bomb)
    assert time.perf_counter() - start < 1
    assert peak_rss.growth() < 16


def test_thousands_of_directory_entries_are_counted(tmp_path: Path, peak_rss: _PeakRss) -> None:
    def chunks() -> Any:
        for i in range(12_000):
            yield _header(f"helpdesk/d{i}/", 0, tarfile.DIRTYPE)
        yield b"\0" * 1024

    bomb = _gzip_tar(tmp_path / "dirs.tar.gz", chunks())
    peak_rss.reset()
    with pytest.raises(BundleError, match="more than 10000 tar entries"):
        verify_bundle(bomb)
    assert peak_rss.growth() < 16


def test_chained_extended_headers_are_refused(tmp_path: Path) -> None:
    # tarfile recurses once per extended header: thousands in a row used to overflow the stack.
    record = b"30 comment=" + b"x" * 18 + b"\n"
    assert len(record) == 30

    def chunks() -> Any:
        for _ in range(5_000):
            yield _header("././@PaxHeader", len(record), tarfile.XHDTYPE) + record + _pad(len(record))
        yield _header("helpdesk/x.rego", 0, tarfile.REGTYPE) + b"\0" * 1024

    with pytest.raises(BundleError, match="extended headers in a row"):
        verify_bundle(_gzip_tar(tmp_path / "chain.tar.gz", chunks()))


def test_a_pax_size_override_is_refused(tmp_path: Path) -> None:
    # A PAX "size" makes tarfile read the next member's data with another size than its header says.
    record = b"12 size=999\n"
    archive = (_header("././@PaxHeader", len(record), tarfile.XHDTYPE) + record + _pad(len(record))
               + _header("helpdesk/x.rego", 0, tarfile.REGTYPE) + b"\0" * 1024)
    with pytest.raises(BundleError, match="sets a member's size"):
        verify_bundle(_gzip_tar(tmp_path / "size.tar.gz", [archive]))


def test_a_gzip_bomb_is_refused_by_its_ratio(tmp_path: Path, peak_rss: _PeakRss) -> None:
    size = 60 * 1024 * 1024  # under the 64 MiB file bound, but all zeros: ~60 KiB compressed
    zeros = b"\0" * (1 << 22)

    def chunks() -> Any:
        yield _header("helpdesk/data.json", size, tarfile.REGTYPE)
        for _ in range(size // len(zeros)):
            yield zeros
        yield b"\0" * 1024

    bomb = _gzip_tar(tmp_path / "zeros.tar.gz", chunks())
    assert bomb.stat().st_size < 1024 * 1024
    peak_rss.reset()
    with pytest.raises(BundleError, match="compression ratio above 200:1"):
        verify_bundle(bomb)
    assert peak_rss.growth() < 16


def test_stream_beyond_the_bound_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import helpdesk_policy.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "_MAX_TAR_BYTES", 64 * 1024)
    data = os.urandom(40 * 1024)  # incompressible: the ratio bound does not apply
    archive = b"".join(_header(f"helpdesk/{i}.rego", len(data), tarfile.REGTYPE) + data for i in range(3))
    with pytest.raises(BundleError, match="decompresses to more than 65536 bytes"):
        read_bundle_files(_gzip_tar(tmp_path / "big.tar.gz", [archive]))


def test_other_entry_types_are_refused_by_the_scan(tmp_path: Path) -> None:
    for kind in (tarfile.GNUTYPE_SPARSE, tarfile.CONTTYPE, tarfile.FIFOTYPE, tarfile.GNUTYPE_LONGLINK):
        archive = _header("helpdesk/x.rego", 0, kind) + b"\0" * 1024
        with pytest.raises(BundleError, match="not a regular file"):
            read_bundle_files(_gzip_tar(tmp_path / "odd.tar.gz", [archive]))


def test_stock_bundles_stay_well_inside_the_bounds(policy_set: PolicySet, tmp_path: Path) -> None:
    info = build_bundle(policy_set, tmp_path / "b.tar.gz", signing_key=SECRET)
    files = read_bundle_files(info.path)
    assert set(files) >= set(policy_set.modules) | {MANIFEST, CONFIG_DATA_PATH}
    raw = gzip.decompress(info.path.read_bytes())
    assert len(raw) / info.size < 50
