"""OPA bundles: build (deterministic), sign (HS256/RS256), verify (tampering, keys), load, CLI."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpdesk_policy import HelpdeskPolicy, parse_request
from helpdesk_policy.bundle import (
    CONFIG_DATA_PATH,
    MANIFEST,
    BundleError,
    BundleVerificationError,
    build_bundle,
    bundle,
    canonical_json,
    file_hash,
    load_bundle,
    read_bundle_files,
    verify_bundle,
)
from helpdesk_policy.policies import PolicySet, stock_policy_dir

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
    assert loaded.data == {"helpdesk": {"config": policy_set.config.to_data()}}
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
    result = runner.invoke(bundle, ["verify", str(hs)], env={"HELPDESK_POLICY_VERIFICATION_KEY": SECRET.decode()})
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
