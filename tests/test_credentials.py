"""Credential-shaped text (issue 11, loose ends of items 1, 2 and 5): what is caught, what is left alone.

The detector guards the decision log (credential-shaped strings are masked),
evidence ids and who marks an obligation done. Both ways are table-driven;
a property shows that generated secrets of every family are caught.
"""

from __future__ import annotations

import doctest
import string
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk_policy import credentials
from helpdesk_policy.credentials import CREDENTIAL_MASK, looks_like_credential
from helpdesk_policy.digest import pseudonym

# Sample keys are assembled from parts, so that no scanner mistakes this file for a leak.
_AWS = "AKIA" + "IOSFODNN7EXAMPLE"
_JWT = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0In0" + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

CAUGHT = [
    # well-known key formats
    _AWS,
    "ASIA" + "Y34FZKBOKMUTVV7A",
    "key id " + _AWS + " in a sentence",
    "ghp_" + "1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ",
    "gho_" + "16C7e42F292c6912E7710c838347Ae178B4a",
    "ghs_" + "abcdefghijklmnopqrstuvwx12",
    "github_pat_" + "11ABCDEFG0123456789_abcdefghijkl",
    "xoxb-" + "123456789012-abcdefghij",
    "xoxp-" + "1234-5678-abcdef",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "rk_live_" + "abcdefghij12",
    "sk-" + "proj-abcdefghijklmnopqrstuvwxyz012345",
    "sk-" + "ant-api03-abcdefghijklmnopqrstuvwxyz",
    "sk-" + "abcdefghijklmnopqrstuvwx",
    "AIza" + "SyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    "glpat-" + "xxxxxxxxxxxxxxxxxxxx",
    _JWT,
    "-----BEGIN RSA " + "PRIVATE KEY-----",
    "-----BEGIN " + "PRIVATE KEY-----\nMIIEv...",
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
    "https://bob:" + "s3cret@example.com/x",
    "postgresql://app:" + "hunter2@db:5432/ledger",
    # assignments
    "password=" + "hunter2",
    "PASSWORD = " + "hunter2",
    "passwd: " + "hunter2",
    "secret=" + "abc",
    "token=" + "abc",
    "?access_token=" + "abc123",
    '{"password": "' + 'x"}',
    "api_key=" + "zzz",
    # one-time codes
    "123456",
    "12345678",
    "1234567",
    " 123456 ",
    "123 456",
    "123-456",
    "1234 5678",
    "my OTP is " + "123456",
    "backup code: " + "4821 9930",
    # recovery codes
    "7f3k-9d2m-x8q1",
    "a1b2c-3d4e5-f6g7h",
    "1234-5678-9012",
    "codes: 7f3k-9d2m-x8q1, 2k4j-8s7d-m1n2",
    # long high-entropy tokens
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==",
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",  # bare hex: a key, unless a digest prefix says otherwise
    "dGhpc2lzYXZlcnlsb25nc2VjcmV0dG9rZW4xMjM0",
]

LEFT_ALONE = [
    # the package's own formats
    str(uuid.UUID("d1c98fca-6cfc-426d-b214-471adbf0c1f3")),
    "sha256:15f5f770a17867e5dab601bd85965b44024d2ae7482dda10d46361bba8ede190",
    pseudonym("u-1042"),
    pseudonym("u-1042", key=b"k"),
    "2026-11-23T16:47:05Z",
    "2026-11-30T13:48:29.857649+00:00",
    "2026-11-23T16:47:05.000000Z",
    # ticket ids
    "INC0012345", "RITM0012345", "INC-2026-0042", "PROJ-123", "CHG-1042", "INC0041388", "RITM-2026-00042",
    # identity ids
    "u-1042", "svc-billing", "alice@example.com", "agent-7", "hd-agent-0", "caller-unverified-0418",
    "svc-billing-prod-eu-west-1", "idp:evt-0001", "mgr-1",
    # reason codes, playbooks, refs, enum values
    "chained_credential_change", "privileged_remote_recovery", "mfa-reset-callback", "CISA-AA23-320A",
    "NIST-CSF-2.0:PR.AA-05", "NIST-SP-800-63B-4", "password_reset", "token_revoke", "manager_of_record_or_in_person",
    # phone numbers in international form
    "+44 20 7946 0000", "+4915112345678", "+1 (555) 010-0199", "+1 555 0100",
    # sentences, URLs, plain words
    "Recovery of a privileged account (tier 2) requested over phone: call back a contact of record before acting.",
    "mfa_reset over an impersonable channel: a push or code to an enrolled device cannot verify this requester.",
    "https://opa.example.com:8181/v1/data/helpdesk/decision",
    "helpdesk-policy", "0.1.0", "ABCD-EFGH-IJKL", "hunter2", "12345", "123456789", "",
    "[redacted]", CREDENTIAL_MASK,
]


@pytest.mark.parametrize("text", CAUGHT)
def test_credentials_are_caught(text: str) -> None:
    assert looks_like_credential(text) is True


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_the_package_formats_and_ordinary_ids_are_left_alone(text: str) -> None:
    assert looks_like_credential(text) is False


def test_many_decision_ids_and_digests_are_left_alone() -> None:
    # uuid4s and sha256 hex vary: 500 of each, none flagged.
    ids = [str(uuid.uuid4()) for _ in range(500)]
    digests = ["sha256:" + uuid.uuid4().hex + uuid.uuid4().hex for _ in range(500)]
    assert [t for t in ids + digests if looks_like_credential(t)] == []


def test_a_non_string_is_never_a_credential() -> None:
    assert looks_like_credential(123456) is False  # type: ignore[arg-type]
    assert looks_like_credential(None) is False  # type: ignore[arg-type]


def test_the_module_doctests_run() -> None:
    result = doctest.testmod(credentials)
    assert result.attempted >= 5 and result.failed == 0


# ------------------------------------------------------------------ generated secrets

_ALNUM = string.ascii_letters + string.digits
_UPPER_DIGITS = string.ascii_uppercase + string.digits
_B64URL = _ALNUM + "-_"


def _chars(alphabet: str, n: int, m: int | None = None) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=n, max_size=m if m is not None else n)


def _token() -> st.SearchStrategy[str]:
    # Distinct characters, so the entropy is log2(len) >= log2(24) > 4.5 bits; a digit and a letter in.
    pool = [c for c in _ALNUM if c not in "0A"]
    return st.lists(st.sampled_from(pool), min_size=22, max_size=40, unique=True).flatmap(
        lambda body: st.permutations(["0", "A", *body]).map("".join))


FAMILIES: dict[str, st.SearchStrategy[str]] = {
    "aws": st.tuples(st.sampled_from(["AKIA", "ASIA"]), _chars(_UPPER_DIGITS, 16)).map("".join),
    "github": st.tuples(st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]), _chars(_ALNUM, 36)).map("".join),
    "github_pat": _chars(_ALNUM + "_", 22, 82).map(lambda s: "github_pat_" + s),
    "slack": st.tuples(st.sampled_from("abprs"), _chars(_ALNUM + "-", 10, 60)).map(lambda t: f"xox{t[0]}-{t[1]}"),
    "stripe": st.tuples(st.sampled_from(["sk_live_", "rk_live_"]), _chars(_ALNUM, 24, 99)).map("".join),
    "openai_anthropic": st.tuples(st.sampled_from(["sk-", "sk-proj-", "sk-ant-api03-"]),
                                  _chars(_B64URL, 20, 90)).map("".join),
    "google": _chars(_B64URL, 35).map(lambda s: "AIza" + s),
    "gitlab": _chars(_B64URL, 20).map(lambda s: "glpat-" + s),
    "jwt": st.tuples(_chars(_B64URL, 10, 40), _chars(_B64URL, 10, 80), _chars(_B64URL, 0, 60)).map(
        lambda t: f"eyJ{t[0]}.eyJ{t[1]}.{t[2]}"),
    "pem": st.sampled_from(["RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", ""]).map(
        lambda k: f"-----BEGIN {k}PRIVATE KEY-----"),
    "basic_auth_url": st.tuples(st.sampled_from(["https", "http", "postgresql", "redis"]),
                                _chars(string.ascii_lowercase, 1, 12), _chars(_ALNUM + "!$%*", 1, 24)).map(
        lambda t: f"{t[0]}://{t[1]}:{t[2]}@host.example/x"),
    "assignment": st.tuples(st.sampled_from(["password", "passwd", "secret", "token", "Password", "API_KEY"]),
                            st.sampled_from(["=", ": ", " = ", ":"]), _chars(_ALNUM + "!#$", 1, 30)).map("".join),
    "otp": st.one_of(_chars(string.digits, 6, 8),
                     st.tuples(_chars(string.digits, 3, 4), st.sampled_from([" ", "-"]),
                               _chars(string.digits, 3, 4)).map("".join)),
    "recovery": st.lists(st.tuples(_chars(string.ascii_lowercase + string.digits, 3, 4),
                                   st.sampled_from(string.digits)).map("".join),
                         min_size=3, max_size=5).map("-".join),
    "token": _token(),
}


@given(data=st.data(), family=st.sampled_from(sorted(FAMILIES)))
def test_generated_secrets_of_every_family_are_caught(data: st.DataObject, family: str) -> None:
    secret = data.draw(FAMILIES[family], label=family)
    assert looks_like_credential(secret), (family, secret)
    # Pasted into a sentence, the shaped ones are still caught (an OTP is one only alone).
    if family != "otp":
        assert looks_like_credential(f"here it is: {secret} thanks"), (family, secret)


@pytest.mark.parametrize("text", ["FactsUnavailableError: the directory is down", "HTTPConnectionPool(host='x')",
                                  "EngineTimeoutError", "ServiceAccountCredentialRotation"])
def test_camel_case_names_are_not_tokens(text: str) -> None:
    # Exception and class names in log lines are long mixed-case runs, but words.
    assert not looks_like_credential(text)
