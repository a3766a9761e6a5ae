"""Rules: an artifact must match one; patterns are shell-style, argv matched as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest.policy import Rule
from tests.policy.helpers import FULL, edit, load_text

BACKUP = Rule(subjects=("deploy-bot",), actions=("exec",), argv=("/usr/bin/backup --full *",),
              hosts=("web-*",))


@pytest.mark.parametrize(("subject", "action", "argv", "host", "allowed"), [
    ("deploy-bot", "exec", ["/usr/bin/backup", "--full", "/srv"], "web-1", True),
    ("deploy-bot", "exec", ["/usr/bin/backup", "--full", "/a", "/b"], "web-1", True),
    ("deploy-bot", "exec", ["/usr/bin/backup --full", "/srv"], "web-1", True),  # joined
    ("deploy-bot", "exec", ["/usr/bin/backup", "--full"], "web-1", False),  # no trailing space
    ("deploy-bot", "exec", ["/usr/bin/backup", "--incremental", "/srv"], "web-1", False),
    ("other-bot", "exec", ["/usr/bin/backup", "--full", "/srv"], "web-1", False),
    ("deploy-bot", "read", ["/usr/bin/backup", "--full", "/srv"], "web-1", False),
    ("deploy-bot", "exec", ["/usr/bin/backup", "--full", "/srv"], "db-1", False),
    ("Deploy-Bot", "exec", ["/usr/bin/backup", "--full", "/srv"], "web-1", False),  # case
])
def test_a_rule_matches_only_when_every_field_does(subject: str, action: str, argv: list[str],
                                                    host: str, allowed: bool) -> None:
    assert BACKUP.matches(subject, action, argv, host) is allowed


def test_literal_wildcards_need_brackets() -> None:
    rule = Rule(("*",), ("exec",), ("/bin/echo [*]",), ("*",))
    assert rule.matches("a", "exec", ["/bin/echo", "*"], "h")
    assert not rule.matches("a", "exec", ["/bin/echo", "x"], "h")


def test_the_first_matching_rule_in_file_order_is_returned(tmp_path: Path) -> None:
    text = edit(FULL, '    hosts: ["*"]\n', '    hosts: ["*"]\n'
                '  - {subjects: ["*"], actions: ["exec"], argv: ["*"], hosts: ["web-?"]}\n')
    policy = load_text(tmp_path, text)
    first, second = policy.rules
    assert policy.match_rule("deploy-bot", "exec", ["/usr/bin/backup", "--full", "x"],
                             "web-1") is first
    assert policy.match_rule("someone", "exec", ["/bin/true"], "web-2") is second
    assert policy.match_rule("someone", "exec", ["/bin/true"], "web-10") is None


def test_no_matching_rule_is_none(tmp_path: Path) -> None:
    policy = load_text(tmp_path, FULL)
    assert policy.match_rule("deploy-bot", "exec", ["/bin/sh"], "web-1") is None
