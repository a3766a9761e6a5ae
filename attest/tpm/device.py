"""Opening a TPM: TCTI selection, connection errors, return codes in words."""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from tpm2_pytss import ESAPI, ESYS_TR, TPMT_SYM_DEF, TSS2_Exception
from tpm2_pytss.constants import TPM2_ALG, TPM2_RC, TPM2_SE, TPM2_SU

from attest.errors import (
    PCRPolicyMismatch,
    TPMEnvironmentError,
    TPMError,
    TPMUnavailable,
    UsageError,
)

DEFAULT_TCTI = "device:/dev/tpmrm0"

START_SIMULATOR_HINT = (
    "start a simulator with `export ATTEST_TCTI=$(attest swtpm start --state ./.attest/swtpm)` "
    "or name a TPM with --tcti"
)

T = TypeVar("T")

_log = logging.getLogger(__name__)


def resolve_tcti(explicit: str | None = None) -> str:
    """--tcti, else ATTEST_TCTI, else TPM2TOOLS_TCTI, else the kernel resource manager."""
    for candidate in (explicit, os.environ.get("ATTEST_TCTI"), os.environ.get("TPM2TOOLS_TCTI")):
        if candidate:
            return candidate
    return DEFAULT_TCTI


# TPM_RC_* values (format-one codes with the parameter/handle/session bits masked
# off) and what a person can do about them.
_RC_WORDS: dict[int, tuple[str, str | None]] = {
    int(TPM2_RC.POLICY_FAIL): ("a policy check failed", None),
    int(TPM2_RC.AUTH_FAIL): ("the authorization value is wrong", None),
    int(TPM2_RC.BAD_AUTH): ("the authorization value is wrong", None),
    int(TPM2_RC.VALUE): ("a value is out of range for this command", None),
    int(TPM2_RC.SIGNATURE): ("the signature is not valid", None),
    int(TPM2_RC.HANDLE): ("the handle does not refer to a loaded object", None),
    int(TPM2_RC.ATTRIBUTES): ("the object's attributes do not allow this command", None),
    int(TPM2_RC.SCHEME): ("the signing scheme is not allowed for this key", None),
    int(TPM2_RC.TICKET): ("the ticket is not valid", None),
    int(TPM2_RC.KEY): ("the key is not valid for this command", None),
}
_RC_VER1_WORDS: dict[int, tuple[str, str | None]] = {
    int(TPM2_RC.INITIALIZE): ("the TPM has not been started",
                              "send TPM2_Startup (swtpm: --flags startup-clear)"),
    int(TPM2_RC.FAILURE): ("the TPM is in failure mode", "reboot the machine or restart swtpm"),
    int(TPM2_RC.COMMAND_CODE): ("the TPM does not implement this command", None),
    int(TPM2_RC.AUTH_MISSING): ("the command needs an authorization session", None),
    int(TPM2_RC.PCR_CHANGED): ("a PCR changed while the policy session was in use", "retry"),
    int(TPM2_RC.NV_UNINITIALIZED): ("the NV index was never written", None),
}
_RC_WARN_WORDS: dict[int, tuple[str, str | None]] = {
    0x902: ("the TPM is out of memory for object contexts",
            "another client has objects loaded (a simulator has no resource manager): retry; "
            "if it persists, a client left them loaded: restart the simulator or flush "
            "transient objects"),
    0x903: ("the TPM is out of memory for sessions",
            "another client has sessions loaded: retry; if it persists, flush stale sessions"),
    int(TPM2_RC.LOCKOUT): ("the TPM is in dictionary-attack lockout",
                           "wait for the lockout to expire (tpm2_getcap properties-variable "
                           "shows the recovery time); on a simulator started by attest, run "
                           "`attest swtpm start` again, which clears it"),
    0x922: ("the TPM is retrying a command", None),
    0x908: ("the TPM is busy", "retry"),
}


def describe_rc(rc: int) -> tuple[str, str | None]:
    """A TPM or TSS return code in words, with a hint where one helps.

    attest's own words for the codes a user meets (and what to do about them); any
    other code in the TSS's words (Tss2_RC_Decode, as tpm2-pytss renders it), so no
    one is left with a bare number. The caller adds the number itself (:func:`rc_text`).
    """
    tpm_rc = rc & 0xFFFF
    layer, _, words = decode_rc(rc)
    if rc >> 16:  # a TSS layer (TCTI, ESAPI, ...) rather than the TPM itself
        return (f"the TSS's {layer} layer could not complete the request: {words}",
                "check that the TPM is reachable through the TCTI")
    fmt1 = format_one_error(rc)
    if fmt1 is not None:
        found = _RC_WORDS.get(fmt1)
    elif tpm_rc & 0x900 == 0x900:
        found = _RC_WARN_WORDS.get(tpm_rc)
    else:
        found = _RC_VER1_WORDS.get(tpm_rc)
    return found if found is not None else (words, None)


def decode_rc(rc: int) -> tuple[str, str | None, str]:
    """(layer, where, words) from the TSS's decoder: ``0x1c4`` is ("tpm", "parameter 1",
    "value is out of range or is not correct for the context"). ``where`` names the
    handle, parameter or session a format-one TPM code is about, else None."""
    try:
        text = str(TSS2_Exception(rc))  # Tss2_RC_Decode: "layer:detail" or "layer:where:detail"
    except Exception:  # noqa: BLE001 - a decoder failure must not hide the code itself
        return "unknown", None, f"return code 0x{rc:x}"
    layer, _, rest = text.partition(":")
    where = None
    head, sep, tail = rest.partition(":")
    match = _LOCUS.fullmatch(head) if sep else None
    if match is not None:
        rest = tail
        if match.group(1) in ("handle", "parameter", "session"):
            where = f"{match.group(1)} {match.group(2)}"
    words = rest.strip()
    if not words or re.fullmatch(r"(0x)?[0-9a-fA-F]+", words):  # a code it has no name for
        words = f"a return code the TSS does not name ({layer} layer)"
    if words[1:2].islower():  # "Fails to connect" reads on in a sentence; "IO failure" stays
        words = words[:1].lower() + words[1:]
    return layer or "unknown", where, words


# The part of a decoded TPM code before its words: "parameter(1)", "warn(2.0)", ...
_LOCUS = re.compile(r"(handle|parameter|session|error|warn|fmt1)\(([0-9.]+)\)")


def rc_text(rc: int) -> str:
    """A return code for a person: its words, what it is about, its number:
    ``a value is out of range for this command (parameter 1, TPM rc 0x1c4)``."""
    where = decode_rc(rc)[1]
    source = "TSS" if rc >> 16 else "TPM"
    return f"{describe_rc(rc)[0]} ({where + ', ' if where else ''}{source} rc 0x{rc:x})"


def format_one_error(rc: int) -> int | None:
    """The error number of a format-one TPM code, without its handle/parameter/session bits."""
    if rc >> 16 or not rc & 0x80:
        return None
    return rc & 0xBF


def is_policy_failure(rc: int) -> bool:
    """TPM_RC_POLICY_FAIL on any session: the session's policy is not the object's."""
    return format_one_error(rc) == int(TPM2_RC.POLICY_FAIL)


# Conditions of the TPM, not of the request: retrying later or elsewhere may work.
_ENVIRONMENT_RCS = frozenset({int(TPM2_RC.LOCKOUT), int(TPM2_RC.FAILURE), int(TPM2_RC.RETRY),
                              int(TPM2_RC.YIELDED), int(TPM2_RC.TESTING),
                              int(TPM2_RC.NV_UNAVAILABLE), int(TPM2_RC.INITIALIZE),
                              # another process extended a PCR during a policy session
                              int(TPM2_RC.PCR_CHANGED),
                              # other clients' objects or sessions fill the TPM's slots
                              int(TPM2_RC.OBJECT_MEMORY), int(TPM2_RC.SESSION_MEMORY)})


def tpm_error(exc: TSS2_Exception, doing: str) -> TPMError:
    rc = int(exc.rc)
    _, hint = describe_rc(rc)
    _log.debug("%s: TSS return code 0x%x: %s", doing, rc, exc)
    message = f"{doing} failed: {rc_text(rc)}"
    if rc >> 16 or rc & 0xFFFF in _ENVIRONMENT_RCS:
        return TPMEnvironmentError(message, rc=rc, hint=hint)
    return TPMError(message, rc=rc, hint=hint)


def _unreachable_hint(tcti: str) -> str:
    if tcti.startswith("device"):
        device = tcti.partition(":")[2] or "/dev/tpmrm0"
        return (f"check that {device} exists and that you may open it (root, or a member of the "
                "tss group); on a machine without a TPM, " + START_SIMULATOR_HINT)
    if tcti.startswith("swtpm"):
        return "is the simulator running? " + START_SIMULATOR_HINT
    return START_SIMULATOR_HINT


class TPM:
    """An open connection to one TPM; use :func:`open_tpm`.

    Every TPM call goes through :meth:`call`, which turns a TSS2_Exception into a
    :class:`TPMError` that says what was being done.
    """

    def __init__(self, esapi: ESAPI, tcti: str) -> None:
        self.esapi = esapi
        self.tcti = tcti
        self._persistent: dict[int, Any] = {}
        self._names: dict[int, bytes] = {}
        self._contexts: dict[bytes, Any] = {}
        # The PCR banks allocated: fixed until the next TPM2_Startup after a PCR_Allocate,
        # so one TPM2_GetCapability per connection (see attest.tpm.pcr.active_banks).
        self.banks: tuple[str, ...] | None = None

    def persistent(self, handle: int) -> Any:
        """The ESYS handle of a persistent object, opened once per connection.

        Esys_TR_FromTPMPublic costs a ReadPublic round trip and allocates an ESYS
        object; a long-lived process quoting in a loop must not repeat either.
        """
        if handle not in self._persistent:
            self._persistent[handle] = self.call(
                f"opening persistent handle 0x{handle:08x}", self.esapi.tr_from_tpmpublic, handle)
        return self._persistent[handle]

    def name_of(self, handle: int) -> bytes:
        """The name ESYS holds for a persistent object opened on this connection.

        ESYS computed it from the public area the TPM returned when the handle was
        opened (:meth:`persistent`), and Esys_TR_GetName hashes that public area
        again on every call: the value cannot differ while the handle stays open,
        so it is computed once.
        """
        if handle not in self._names:
            self._names[handle] = bytes(self.call(
                f"reading the name of 0x{handle:08x}", self.esapi.tr_get_name,
                self.persistent(handle)))
        return self._names[handle]

    def forget_persistent(self, handle: int) -> None:
        """Drop what this connection knows of a persistent object (it was replaced); saved
        contexts go too, as they may be of objects under it."""
        self._persistent.pop(handle, None)
        self._names.pop(handle, None)
        self._contexts.clear()

    def load_saved(self, key: bytes, load: Callable[[], Any]) -> Any:
        """A transient object loaded by ``load`` the first time on this connection, and
        from its saved context (TPM2_ContextLoad) afterwards; the caller flushes it.

        A context load skips the unwrapping under the parent, and ESYS hashing the public
        area to check the name, which a TPM2_Load costs. The saved context is only good
        until the TPM restarts; a context that no longer loads is dropped and the object
        is loaded afresh. ``key`` identifies the object (its public and wrapped private
        blobs).
        """
        saved = self._contexts.get(key)
        if saved is not None:
            try:
                return self.esapi.context_load(saved)
            except TSS2_Exception:
                del self._contexts[key]
        handle = load()
        with suppress(TSS2_Exception):  # then the next use loads it again: slower, no worse
            self._contexts[key] = self.esapi.context_save(handle)
        return handle

    def call(self, doing: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except TSS2_Exception as exc:
            raise tpm_error(exc, doing) from exc

    def start_session(self, session_type: TPM2_SE, doing: str) -> Any:
        """An unbound, unsalted SHA-256 session (policy or HMAC); the caller flushes it.

        The caller's first nonce comes from Python's CSPRNG: left to ESYS it costs more
        than the command (tpm2-tss 3.2 sets up a new OpenSSL library context for every
        random draw and hash, ~0.7 ms here).
        """
        return self.call(doing, self.esapi.start_auth_session, ESYS_TR.NONE, ESYS_TR.NONE,
                         session_type, TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256,
                         nonce_caller=secrets.token_bytes(32))

    def flush(self, handle: Any) -> None:
        """Flush a transient object or session; swtpm has 3 slots and no resource manager."""
        try:
            self.esapi.flush_context(handle)
        except TSS2_Exception as exc:
            raise tpm_error(exc, "flushing a transient object") from exc

    def shutdown(self) -> None:
        """TPM2_Shutdown(CLEAR): an orderly stop that keeps the lockout counter still."""
        self.call("TPM2_Shutdown", self.esapi.shutdown, TPM2_SU.CLEAR)


def _connect(tcti: str) -> ESAPI:
    if not tcti or (":" not in tcti and tcti not in ("device", "swtpm", "mssim", "tabrmd")):
        raise UsageError(f"not a TCTI string: {tcti!r}",
                         hint="use e.g. swtpm:path=/tmp/s.sock or device:/dev/tpmrm0")
    try:
        return ESAPI(tcti)
    except TSS2_Exception as exc:
        raise TPMUnavailable(
            f"cannot reach a TPM through {tcti!r}: {rc_text(int(exc.rc))}",
            hint=_unreachable_hint(tcti),
        ) from exc
    except (OSError, RuntimeError) as exc:
        raise TPMUnavailable(f"cannot reach a TPM through {tcti!r}: {exc}",
                             hint=_unreachable_hint(tcti)) from exc


@contextmanager
def open_tpm(tcti: str | None = None) -> Iterator[TPM]:
    """Open the TPM named by ``tcti`` (or the environment) and close it afterwards."""
    resolved = resolve_tcti(tcti)
    esapi = _connect(resolved)
    try:
        tpm = TPM(esapi, resolved)
        _log.info("talking to the TPM through %s", resolved)
        # A cheap first command: a TCTI can open a socket that nothing answers on.
        try:
            esapi.get_random(1)
        except TSS2_Exception as exc:
            raise TPMUnavailable(
                f"the TPM at {resolved!r} does not answer: {rc_text(int(exc.rc))}",
                hint=_unreachable_hint(resolved),
            ) from exc
        yield tpm
    finally:
        esapi.close()


__all__ = [
    "DEFAULT_TCTI",
    "TPM",
    "PCRPolicyMismatch",
    "decode_rc",
    "describe_rc",
    "is_policy_failure",
    "open_tpm",
    "rc_text",
    "resolve_tcti",
]
