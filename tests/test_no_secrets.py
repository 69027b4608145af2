"""No secret is ever kept (SPEC rule 5): a property test over the whole ticket life.

Generated secret-like strings (one-time codes, recovery codes, cloud and
platform API keys, JWTs, long random tokens, ``password=…`` text) are planted
in every field a caller fills in: the request (ticket id, justification, every
identifier), the evidence (every identifier and event id), the exception
(every identifier), the lifecycle steps (who, to whom) and the obligation's
``by``. Each planted value is either refused, by an error that does not repeat
it, or accepted and then kept out of every place a decision's life is
written: the ledger (the raw database file for SQLite, every row for
PostgreSQL), the JSON-lines decision log, the stdlib-logging decision log, the
library's own log messages, and the compliance report as text, JSON and HTML.
A secret is looked for case-insensitively: identifiers are stored case-folded.
"""

from __future__ import annotations

import io
import json
import logging
import re
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from helpdesk_policy import HelpdeskPolicy
from helpdesk_policy.evidence import Approval, Callback, Evidence, IdentityProof, Outcome
from helpdesk_policy.ledger import ExceptionRegistry, JsonlSink, LedgerSink, LoggingSink, ObligationTracker, open_ledger
from helpdesk_policy.ledger.lifecycle import TicketLifecycle
from helpdesk_policy.ledger.report import render_text, report_from_jsonl, report_from_ledger
from helpdesk_policy.ledger.report_html import render_html
from ledger_backends import pg_unavailable, postgres_schema  # noqa: E402 - tests/ is on sys.path

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
LOWER_DIGITS = string.ascii_lowercase + string.digits


def _text(alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=size, max_size=size)


def _mixed(size: int) -> st.SearchStrategy[str]:
    # Upper, lower and digits all present: a random token, not a word.
    return _text(ALNUM, size).filter(lambda s: any(c.isupper() for c in s) and any(c.islower() for c in s)
                                     and sum(c.isdigit() for c in s) >= 2)


#: Secret-like strings, by family.
SECRETS = st.one_of(
    st.integers(100000, 99999999).map(str),                                          # one-time code
    st.lists(_text(LOWER_DIGITS, 4).filter(lambda g: any(c.isdigit() for c in g) and any(c.isalpha() for c in g)),
             min_size=3, max_size=4).map("-".join),                                   # recovery code
    _text(UPPER_DIGITS, 16).map(lambda s: "AKIA" + s),                                  # AWS access key id
    _mixed(36).map(lambda s: "ghp_" + s),                                              # GitHub token
    _mixed(40).map(lambda s: "glpat-" + s[:20]),                                       # GitLab token
    st.tuples(_mixed(20), _mixed(30), _mixed(24)).map(
        lambda p: f"eyJhbGciOiJIUzI1NiJ9.eyJ{p[0]}{p[1]}.{p[2]}"),                      # JWT
    _mixed(32),                                                                        # a long random token
    _mixed(12).map(lambda s: f"password={s}"),                                        # a typed password
)

NOW = datetime.now(timezone.utc)


def _request(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "request": {"id": "INC-9001", "action": "mfa_reset", "channel": "phone",
                    "justification": "lost my phone"},
        "actor": {"id": "u-100", "type": "human", "relationship": "self", "authenticated": False,
                  "auth_strength": "none", "roles": ["employee"]},
        "target": {"id": "u-100", "type": "human", "privileged": True, "privilege_tier": 2, "vip": False,
                   "status": "active", "manager": "u-200", "contact_age_days": 900},
        "context": {"recent_credential_change_hours": 2000, "enrolled_factor_available": False},
    }
    for path, value in over.items():
        node = doc
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return doc


#: Where a secret is planted: a name, and what the scenario does with the value.
#: Each entry gives overrides of the scenario's inputs.
FIELDS: dict[str, Callable[[str], dict[str, Any]]] = {
    "request.id": lambda s: {"request": {"request.id": s}},
    "request.justification": lambda s: {"request": {"request.justification": f"my code is {s}, please hurry"}},
    "actor.id": lambda s: {"request": {"actor.id": s, "target.id": s}, "requester": s},
    "actor.roles": lambda s: {"request": {"actor.roles": ["employee", s]}},
    "target.manager": lambda s: {"request": {"target.manager": s}, "approver": s},
    "target.id (NHI owner)": lambda s: {"request": {
        "request.action": "api_key_reissue", "actor.relationship": "owner", "actor.id": "u-100",
        "target.id": "svc-billing", "target.type": "service_account", "target.owners": [s, "u-100"],
        "target.owner_active": True, "target.manager": None}},
    "evidence.requester_id": lambda s: {"requester": s},
    "evidence.authentication_event": lambda s: {"auth_event": s},
    "evidence.identity_proof.verified_by": lambda s: {"verifier": s},
    "evidence.approval.approver_id": lambda s: {"approver": s},
    "evidence.callback.answered_by": lambda s: {"answered_by": s},
    "exception.requested_by": lambda s: {"exception": {"requested_by": s}},
    "exception.approved_by": lambda s: {"exception": {"approved_by": s}},
    "exception.reference": lambda s: {"exception": {"reference": s}},
    "exception.id": lambda s: {"exception": {"id": s}},
    "lifecycle.by": lambda s: {"closed_by": s},
    "lifecycle.escalate_to": lambda s: {"escalate_to": s},
    "obligation.done_by": lambda s: {"done_by": s},
}


class _Refused(Exception):
    """A planted value was refused; the error's text is kept to check it."""


@contextmanager
def _captured_logs() -> Iterator[io.StringIO]:
    """Everything the library logs (its own messages and the logging sink's records), as text."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("helpdesk_policy")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _run_life(url: str, workdir: Path, plant: dict[str, Any], errors: list[str]) -> list[str]:
    """One ticket's life with the planted values; every text it left behind (errors apart)."""
    def attempt(step: Callable[[], Any]) -> Any:
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - a refusal is an expected outcome; its text is checked
            errors.append(f"{type(exc).__name__}: {exc}")
            raise _Refused from None

    outputs: list[str] = []
    jsonl = workdir / "decisions.jsonl"
    store = open_ledger(url)
    try:
        with _captured_logs() as logs:
            tracker = ObligationTracker(store)
            registry = ExceptionRegistry(store, refresh_s=0)
            exception = {
                "id": "EXC-1", "target_id": "u-100", "action": "mfa_reset", "level": "manager_approval",
                "requested_by": "hd-1", "reason": "travel_no_callback_contact", "reference": "RISK-1",
                "approved_by": "sec-9", "approver_type": "human", "approved_at": NOW,
                "expires_at": NOW + timedelta(hours=24),
                **plant.get("exception", {}),
            }
            try:
                attempt(lambda: registry.grant(exception))
            except _Refused:
                pass
            sink = LedgerSink(store, chain=LedgerSink.BY_TICKET, track_obligations=tracker)
            jsonl_sink = JsonlSink(jsonl)
            logging_sink = LoggingSink()

            def fan_out(record: dict[str, Any]) -> None:
                sink(record)
                jsonl_sink(record)
                logging_sink(record)

            policy = HelpdeskPolicy(engine="native", log_sink=fan_out, exceptions=registry,
                                    log_labels={"team": "desk-1"})
            try:
                request = _request(**plant.get("request", {}))
                decision = attempt(lambda: policy.decide(request))
                ticket = request["request"]["id"]
                requester = plant.get("requester", request["actor"]["id"])
                approver = plant.get("approver", "u-200")
                evidence = attempt(lambda: Evidence(
                    decision_id=decision.decision_id, input_digest=decision.input_digest,
                    requester_id=requester, authentication_event=plant.get("auth_event", "idp-evt-1"),
                    identity_proof=IdentityProof(method="supervised_remote_proofing",
                                                 verified_by=plant.get("verifier", "hd-1"),
                                                 verified_by_type="human", at=NOW),
                    approval=Approval(approver_id=approver, approver_type="human",
                                      relationship_of_record="manager", at=NOW),
                    callback=Callback(contact="+44 20 7946 0018", contact_source="directory",
                                      contact_age_days=900, answered_by=plant.get("answered_by", requester),
                                      answered_by_type="human", at=NOW),
                    outcome=Outcome(status="completed", at=NOW), recorded_at=NOW))
                lifecycle = TicketLifecycle(store)
                for step in (
                    lambda: lifecycle.record_evidence(decision, evidence, ticket=ticket),
                    lambda: lifecycle.escalate(ticket, by="hd-1", to=plant.get("escalate_to", "tier-2")),
                    lambda: lifecycle.close(decision, evidence, ticket=ticket, by=plant.get("closed_by", "hd-1"),
                                            allow_incomplete=True),
                ):
                    try:
                        attempt(step)
                    except _Refused:
                        pass
                sink.flush(10)
                for item in tracker.items():
                    try:
                        attempt(lambda: tracker.mark_done(item.decision_id, item.code,
                                                          by=plant.get("done_by", "hd-1")))
                    except _Refused:
                        pass
            except _Refused:
                pass
            finally:
                sink.close()
                jsonl_sink.close()
                policy.close()
            report = report_from_ledger(store, now=NOW + timedelta(hours=30))
            outputs += [render_text(report), report.to_json(), render_html(report)]
            from_log = report_from_jsonl([jsonl], now=NOW)
            outputs += [render_text(from_log), render_html(from_log)]
            outputs.append(logs.getvalue())
        outputs.append(jsonl.read_text(encoding="utf-8") if jsonl.exists() else "")
        outputs += [json.dumps([e.__dict__ for e in store.scan()], ensure_ascii=False)]
        outputs += [json.dumps(store.chains(), ensure_ascii=False)]
    finally:
        store.close()
    if url.startswith("sqlite:///"):
        # The raw bytes of the database and its journal: nothing hides in a page.
        for path in workdir.glob("ledger.db*"):
            outputs.append(path.read_bytes().decode("utf-8", "replace"))
    return outputs


def _assert_kept_out(secret: str, outputs: list[str], errors: list[str], where: str) -> None:
    # As a whole token: a six-digit code must not "match" inside a timestamp's
    # microseconds or a hash, which would make the test fail at random.
    needle = re.compile(rf"(?<![0-9a-z]){re.escape(secret.casefold())}(?![0-9a-z])")
    for text in outputs:
        assert not needle.search(text.casefold()), f"the secret planted in {where} was kept"
    for error in errors:
        assert not needle.search(error.casefold()), f"the error refusing the secret planted in {where} repeats it: {error}"


_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])


@_SETTINGS
@given(secret=SECRETS, field=st.sampled_from(sorted(FIELDS)))
def test_a_secret_planted_anywhere_is_kept_nowhere_sqlite(tmp_path_factory: pytest.TempPathFactory, secret: str,
                                                         field: str) -> None:
    # A ticket id is the ticketing system's, and Zendesk's are runs of digits: kept (below).
    assume(not (field == "request.id" and secret.isdigit()))
    workdir = tmp_path_factory.mktemp("life")
    errors: list[str] = []
    outputs = _run_life(f"sqlite:///{workdir / 'ledger.db'}", workdir, FIELDS[field](secret), errors)
    _assert_kept_out(secret, outputs, errors, field)


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_secret_planted_anywhere_is_kept_nowhere_postgres(tmp_path: Path, field: str) -> None:
    if pg_unavailable():
        pytest.skip(pg_unavailable())
    secrets = ["493817", "7f3k-9d2m-x8q1", "AKIAIOSFODNN7EXAMPLE", "ghp_" + "a1B2c3D4" * 4 + "e5F6",
               "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
               "x9Qm2LpR7vTz4KwN8sYb3HcDq1Zt", "password=Tr0ub4dor3x"]
    for secret in secrets:
        if field == "request.id" and secret.isdigit():
            continue  # a ticket number (see test_a_zendesk_ticket_number_is_kept)
        with postgres_schema("nosecret") as (url, _schema):
            errors: list[str] = []
            outputs = _run_life(url, tmp_path, FIELDS[field](secret), errors)
            _assert_kept_out(secret, outputs, errors, field)


def test_the_harness_finds_a_secret_that_is_kept(tmp_path: Path) -> None:
    """The check can fail: a secret in a field that is kept verbatim by design is found."""
    # An identifier kept verbatim (log_identifiers="keep") that is not credential-shaped,
    # planted as the approver: it must be found in the ledger (the evidence records it).
    errors: list[str] = []
    outputs = _run_life(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, FIELDS["evidence.approval.approver_id"]("u-7777"),
                        errors)
    with pytest.raises(AssertionError, match="was kept"):
        _assert_kept_out("u-7777", outputs, errors, "evidence.approval.approver_id")


def test_a_zendesk_ticket_number_is_kept(tmp_path: Path) -> None:
    """A run of digits in the ticket id is a ticket number, not a one-time code: it stays the ticket."""
    errors: list[str] = []
    outputs = _run_life(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, FIELDS["request.id"]("100042"), errors)
    assert not errors
    assert '"ticket:100042"' in outputs[-2]  # the ledger's chains
