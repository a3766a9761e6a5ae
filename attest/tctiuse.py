"""The TPM this attest command was told to talk to (``--tcti``), for what decides by the
TPM's kind before one is open: whether PCR 15 is shared with systemd's log
(attest.host.runtime.systemd_log; not for a simulator). Set by the CLI on every
invocation (None without --tcti), so nothing of an earlier in-process one stays."""

from __future__ import annotations

command_tcti: str | None = None
