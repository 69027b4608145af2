"""examples/chatbot/agent.py (issue 12, item 6): run as a user would, and its transcript checked.

The honest reset is performed once with a permit; the lying model's extra
arguments are named and refused, its lie escalates to the service desk, its
made-up permit is refused, and the requester is told what happens next with
no reason, risk signal or fact of record; the replayed permit is refused; one
identity change is made in all.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AGENT = ROOT / "examples" / "chatbot" / "agent.py"


@pytest.fixture(scope="module")
def transcript() -> str:
    proc = subprocess.run([sys.executable, str(AGENT)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    # The library's warning about the replay goes to the log (stderr), never the transcript.
    assert "presented again after use: refused" in proc.stderr
    return proc.stdout


def section(transcript: str, title: str) -> str:
    start = transcript.index(f"== {title}")
    end = transcript.find("\n== ", start + 1)
    return transcript[start:] if end < 0 else transcript[start:end]


def test_the_honest_reset_is_performed_with_a_permit(transcript: str) -> None:
    a = section(transcript, "(a)")
    assert "-> perform, with a permit for password_reset on u-51876" in a
    assert "[executor] reset_password: done: password reset for u-51876" in a


def test_the_lying_model_is_stopped(transcript: str) -> None:
    b = section(transcript, "(b)")
    assert ("-> error invalid_arguments: auth_strength, privileged, relationship: is not an argument of this tool"
            in b)
    assert ("-> escalate to service_desk, manager, callback:holder (needs max_level, identity_step_up, "
            "manager_approval, out_of_band_callback)") in b
    assert "[service desk] ticket CHAT-1002 handed over" in b and "Decision: CALLBACK (allowed)" in b
    assert "[executor] reset_mfa: refused: not a valid permit" in b
    (reply,) = [line for line in b.splitlines() if line.startswith("bot: ")]
    assert reply.startswith("bot: This request cannot be completed yet. First, a member of the service desk will "
                            "verify your identity")
    assert "calling back on contact details already on record" in reply
    for leak in ("privileg", "adm-7", "u-20990", "manager", "admin", "password authentication", "weak",
                 "remote_channel_recovery", "tier"):
        assert leak not in reply, leak


def test_the_replayed_permit_is_refused(transcript: str) -> None:
    c = section(transcript, "(c)")
    assert re.search(r"\[executor\] reset_password: refused: permit permit-[0-9a-f-]{36} was consumed before: "
                     r"a permit authorizes one execution", c)


def test_one_identity_change_in_all(transcript: str) -> None:
    assert transcript.rstrip().endswith("== identity changes made: 1 (password_reset on u-51876)")
