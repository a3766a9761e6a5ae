"""Evidence-chosen strings reach the terminal escaped: a host cannot forge output lines,
rewrite the screen or reorder text with control, separator or bidi characters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from attest.artifact.model import Lineage
from attest.cli.terminal import visible
from attest.eventlog.cel import attest_record, encode_log, measurement_content
from attest.policy import Rule
from tests.verify.rig import Rig

ANY_RULE = [Rule(("*",), ("*",), ("*",), ("*",))]
FORGED = "deploy-bot\naccepted: root may exec 'rm -rf /' on web-1 (jti forged)"


def _policy_file(rig: Rig) -> Path:
    rig.policy(rules=ANY_RULE)
    return max(rig.tmp.glob("policy-*.yaml"), key=lambda p: p.stat().st_mtime_ns)


@pytest.mark.parametrize("text", [
    "a\nb", "a\rb", "a\x1b[2Jb", "a\x9bb", "a\x7fb", "a\u2028b", "a\u2029b", "a\u202eb",
    "a\u2066b", "a\x00b", "a\tb", "a\ud800b", "a\U000e0001b",
])
def test_visible_escapes_every_character_a_terminal_acts_on(text: str) -> None:
    shown = visible(text)
    assert shown.isprintable() and shown.isascii()
    assert shown.startswith("a\\") and shown.endswith("b")


def test_visible_leaves_printable_text_alone() -> None:
    assert visible("deploy-bot may run 'ls -l /srv' on web-1 (é, 漢字)") == \
        "deploy-bot may run 'ls -l /srv' on web-1 (é, 漢字)"


def test_a_subject_with_a_line_feed_prints_one_accepted_line(rig: Rig) -> None:
    artifact = rig.tmp / "forged.jws"
    artifact.write_bytes(rig.issue("ls", "\x1b]0;owned\x07", subject=FORGED))
    result = rig.host.run("verify", str(artifact), "--policy", str(_policy_file(rig)))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("accepted: deploy-bot\\x0aaccepted: root")
    assert "\x1b" not in result.stdout and "\\x1b]0;owned\\x07" in result.stdout


def test_a_denial_message_prints_escaped(rig: Rig) -> None:
    # The verifier quotes the parent's jti in its denial; the host chose that jti.
    parent = "p\u202e\n  accepted: nothing to see"
    artifact = rig.tmp / "denied.jws"
    artifact.write_bytes(rig.reissue(rig.issue(), requote=True, claims=lambda c: (
        dataclasses.replace(c, lineage=Lineage(parent, "00" * 32, 1)))))
    result = rig.host.run("verify", str(artifact), "--policy", str(_policy_file(rig)))
    assert result.exit_code == 1
    assert "lineage_broken: the parent p\\u202e\\x0a  accepted" in result.stderr
    assert all(line.isprintable() for line in result.stderr.splitlines())


def test_eventlog_show_escapes_log_descriptions(tmp_path: Path, rig: Rig) -> None:
    name = "/usr/bin/ok\n   9   15  attest  sha256:000000000000 \u202efake"
    record = attest_record(0, 15, measurement_content(
        "file", name, {"sha256": bytes(32)}, path=name), ["sha256"])
    log = tmp_path / "runtime.cel"
    log.write_bytes(encode_log([record]))
    shown = rig.host.ok("eventlog", "show", str(log)).stdout
    assert len(shown.splitlines()) == 2  # the header and one record
    assert "\u202e" not in shown and "\\u202efake" in shown
    as_json = rig.host.ok("eventlog", "show", str(log), "--json").stdout
    assert "\u202e" not in as_json and "\u202efake" in json.loads(as_json)[0]["description"]
