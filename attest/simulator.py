"""The swtpm simulator: provision a state folder, start, stop, report status.

Everything lives in one state folder (see attest/templates/swtpm/README.md): the TPM's NV state,
the local CA that issued its EK and platform certificates, the sockets, the pid
file and the log. Nothing is written under /etc, /var/lib or ~/.config.

Pitfalls this module handles (measured on swtpm 0.7.1):
- the socket file exists before swtpm listens, so readiness is a real connect;
- the default dictionary-attack policy (3 tries, 1000 s) locks the TPM after
  three unclean stops, so every start relaxes it and clears any lockout;
- `mssim:` does not talk to swtpm 0.7; `swtpm:path=SOCK` does, with the control
  socket at `SOCK.ctrl`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

from attest.durable import fsync_dir
from attest.errors import SimulatorError, TPMUnavailable, UsageError

SETUP_TIMEOUT_S = 60.0
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_TOOLS = ("swtpm", "swtpm_setup", "swtpm_localca")
# A wheel install has no ./scripts/quickstart: the hint names the packages themselves.
_INSTALL_HINT = ("install them: `apt-get install swtpm swtpm-tools` on Debian or Ubuntu "
                 "(`attest docs install`)")


@dataclass(frozen=True)
class SimulatorStatus:
    state_dir: Path
    provisioned: bool
    running: bool
    pid: int | None
    tcti: str
    # An earlier provisioning stopped before completing; `attest swtpm start` redoes it.
    interrupted: bool = False
    # swtpm processes of this folder that are not the running simulator (a start killed
    # outright); the next start or stop ends them.
    strays: tuple[int, ...] = ()

    def describe(self) -> str:
        leftovers = (f" ({len(self.strays)} leftover swtpm process(es) of an interrupted "
                     f"start: pid {', '.join(map(str, self.strays))}; `attest swtpm start` "
                     "or `stop` ends them)" if self.strays else "")
        if self.running:
            return f"running (pid {self.pid}) at {self.tcti}" + leftovers
        if self.provisioned:
            return f"stopped; provisioned state in {self.state_dir}" + leftovers
        if self.interrupted:
            return (f"not provisioned: an earlier provisioning of {self.state_dir} was "
                    "interrupted; `attest swtpm start` provisions it again" + leftovers)
        return f"not provisioned: {self.state_dir} has no TPM state" + leftovers


# The swtpm_setup configuration files, filled in for each state folder (@STATE@).
_TEMPLATES = ("swtpm_setup.conf", "swtpm-localca.conf", "swtpm-localca.options")


def templates_dir() -> Traversable:
    """The templates' folder: package data (attest/templates/swtpm), found through
    importlib.resources so that a wheel install has them as an editable one does;
    $ATTEST_SWTPM_TEMPLATES names another folder (a site's own CA settings)."""
    env = os.environ.get("ATTEST_SWTPM_TEMPLATES")
    if env:
        return Path(env)
    return importlib.resources.files("attest") / "templates" / "swtpm"


def load_templates() -> Mapping[str, str]:
    """Every template's text, read before anything is made: a missing one stops a start
    before it creates a folder."""
    folder = templates_dir()
    texts = {}
    for name in _TEMPLATES:
        try:
            texts[name] = (folder / f"{name}.in").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SimulatorError(
                f"swtpm configuration template {name}.in not readable in {folder}: "
                f"{getattr(exc, 'strerror', None) or exc}",
                hint="reinstall attest (the templates are package data); if "
                     "ATTEST_SWTPM_TEMPLATES is set, it must name a folder holding them",
            ) from exc
    return texts


class Simulator:
    """One swtpm instance, identified by its state folder."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir).resolve()

    # Paths ---------------------------------------------------------------
    @property
    def tpm_state(self) -> Path:
        return self.state_dir / "tpm"

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / "ca"

    @property
    def socket_path(self) -> Path:
        return self.state_dir / "swtpm.sock"

    @property
    def ctrl_path(self) -> Path:
        return self.state_dir / "swtpm.sock.ctrl"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "swtpm.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "swtpm.log"

    @property
    def tcti(self) -> str:
        return f"swtpm:path={self.socket_path}"

    @property
    def root_ca_cert(self) -> Path:
        """The local CA's self-signed root: the trust anchor for this simulator's EK."""
        return self.ca_dir / "swtpm-localca-rootca-cert.pem"

    @property
    def intermediate_ca_cert(self) -> Path:
        """The CA certificate that signs the EK certificates."""
        return self.ca_dir / "issuercert.pem"

    @property
    def provisioned(self) -> bool:
        # tpm/ appears only complete (renamed in by provision): its NV file is the sign.
        return (self.tpm_state / "tpm2-00.permall").is_file()

    @property
    def staging_dir(self) -> Path:
        """Where provision builds the state before renaming it into place."""
        return self.state_dir / "provisioning"

    @property
    def interrupted(self) -> bool:
        """An earlier provisioning stopped before it completed (its leftovers remain)."""
        return not self.provisioned and (self.staging_dir.exists() or self.tpm_state.exists())

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "start.lock"

    # Provisioning ----------------------------------------------------------
    def provision(self) -> bool:
        """Create the TPM state with EK and platform certificates; False if it already exists.

        Atomic: the state is built in :attr:`staging_dir` and renamed into place, tpm/
        last, only once swtpm_setup has finished; an interrupted provisioning leaves no
        tpm/ and is redone from scratch by the next call. swtpm_setup (and the swtpm it
        runs) is killed, with its whole process group, when anything stops it early.
        """
        if self.provisioned:
            return False
        # Everything that can be checked is checked before anything is made.
        _require_tools()
        self.check_socket_path()
        templates = load_templates()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        staging = self.staging_dir
        # Leftovers of an interrupted provisioning: a partial TPM state, never used.
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(self.tpm_state, ignore_errors=True)
        try:
            self._provision_in(staging, templates)
        finally:
            # Whatever stopped it, no half-made staging folder stays (its arrival in
            # place is the last step; after it the folder is gone already).
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def _provision_in(self, staging: Path, templates: Mapping[str, str]) -> None:
        for folder in ("tpm", "ca", "config"):
            (staging / folder).mkdir(parents=True)
        os.chmod(staging / "ca", 0o700)
        if (self.root_ca_cert.is_file() and self.intermediate_ca_cert.is_file()
                and (self.ca_dir / "signkey.pem").is_file()):
            # A complete local CA is kept: verifiers may trust its root already.
            shutil.copytree(self.ca_dir, staging / "ca", dirs_exist_ok=True)
        self._write_config(templates, staging, staging)
        env = dict(os.environ, XDG_CONFIG_HOME=str(staging / "config"))
        cmd = [
            "swtpm_setup", "--tpm2",
            "--tpmstate", str(staging / "tpm"),
            "--config", str(staging / "config" / "swtpm_setup.conf"),
            "--create-ek-cert", "--create-platform-cert", "--lock-nvram",
            "--pcr-banks", "sha256",
            "--logfile", str(self.state_dir / "swtpm_setup.log"),
        ]
        returncode, stderr = _run_group(cmd, env, SETUP_TIMEOUT_S, "swtpm_setup")
        if returncode != 0 or not (staging / "tpm" / "tpm2-00.permall").is_file():
            log = self._tail(self.state_dir / "swtpm_setup.log")
            raise SimulatorError(
                f"swtpm_setup failed (exit {returncode}): {stderr.strip() or log}",
                hint=f"see {self.state_dir / 'swtpm_setup.log'}",
            )
        # The config names the final paths (a later provisioning reuses the CA there).
        self._write_config(templates, staging, self.state_dir)
        for folder in ("ca", "config", "tpm"):  # tpm last: its arrival means complete
            target = self.state_dir / folder
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / folder, target)
        fsync_dir(self.state_dir)

    @staticmethod
    def _write_config(templates: Mapping[str, str], where: Path, state: Path) -> None:
        for name, text in templates.items():
            (where / "config" / name).write_text(text.replace("@STATE@", str(state)))

    # Process control -------------------------------------------------------
    def status(self) -> SimulatorStatus:
        pid = self._live_pid()
        strays = tuple(p for p in self._strays() if p != pid)
        return SimulatorStatus(self.state_dir, self.provisioned, pid is not None, pid, self.tcti,
                               self.interrupted, strays)

    def start(self) -> tuple[str, bool]:
        """Provision if needed, start swtpm, relax DA lockout; returns (tcti, started_now).

        All or nothing: when anything stops it before it completes (an error, Ctrl-C,
        SIGTERM made an exception by the caller), every swtpm process of this state
        folder it started is killed, and no half-made state is left as provisioned.
        """
        self.check_socket_path()
        pid = self._live_pid()
        if pid is not None and self._answers():
            return self.tcti, False
        # A start that cannot succeed (no swtpm, no templates) fails before it makes the
        # state folder: it leaves nothing to clean up.
        _require_tools()
        if not self.provisioned:
            load_templates()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.lock_path):
            pid = self._live_pid()
            if pid is not None and self._answers():
                return self.tcti, False  # another start finished meanwhile
            if pid is not None:
                # Alive but deaf: a wedged process would keep the socket; replace it.
                self._terminate(pid)
            # Orphans of a start that was killed outright (SIGKILL: nothing could clean up).
            self._kill_strays()
            self._clean_stale()
            try:
                return self._start()
            except BaseException:
                self._kill_strays()
                self._clean_stale()
                raise

    def _start(self) -> tuple[str, bool]:
        self.provision()
        _require_tools()
        cmd = [
            "swtpm", "socket", "--tpm2",
            "--server", f"type=unixio,path={self.socket_path}",
            "--ctrl", f"type=unixio,path={self.ctrl_path}",
            "--tpmstate", f"dir={self.tpm_state}",
            "--flags", "not-need-init,startup-clear",
            "--pid", f"file={self.pid_file}",
            "--log", f"file={self.log_file},level=1",
            "--daemon",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S,
                                check=False)
        if result.returncode != 0:
            raise SimulatorError(
                f"swtpm did not start (exit {result.returncode}): {result.stderr.strip()}",
                hint=f"see {self.log_file}",
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if time.monotonic() > deadline:
                raise SimulatorError(f"swtpm did not answer on {self.socket_path} "
                                     f"within {START_TIMEOUT_S:.0f} s", hint=f"see {self.log_file}")
            time.sleep(0.002)
        self._relax_lockout()
        return self.tcti, True

    def stop(self) -> bool:
        """Orderly TPM2_Shutdown, then SIGTERM; False when nothing was running."""
        pid = self._live_pid()
        if pid is None:
            strays = self._strays()
            self._kill_strays()
            self._clean_stale()
            return bool(strays)
        if self._answers():
            try:
                from attest.tpm.device import open_tpm

                with open_tpm(self.tcti) as tpm:
                    tpm.shutdown()
            except (TPMUnavailable, SimulatorError):
                # Unreachable now means it is dying already; SIGTERM still stops it.
                pass
        self._terminate(pid)
        self._clean_stale()
        return True

    def kill(self) -> None:
        """SIGKILL without shutdown: for tests of crash recovery only."""
        pid = self._live_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, STOP_TIMEOUT_S)

    # Internals ---------------------------------------------------------------
    def _relax_lockout(self) -> None:
        # Local import: tpm/ is the only layer that opens an ESAPI.
        from attest.tpm.device import open_tpm
        from attest.tpm.hierarchy import relax_dictionary_attack

        with open_tpm(self.tcti) as tpm:
            relax_dictionary_attack(tpm)

    def check_socket_path(self) -> None:
        text = str(self.socket_path)
        if not text.isprintable():  # a control character, or a byte not UTF-8 (a surrogate)
            # The TCTI names the socket as text (printed for `export ATTEST_TCTI=$(...)`,
            # passed to the TSS as UTF-8): a path it cannot carry is refused first.
            raise UsageError(f"the --state path {self.state_dir} is not printable "
                             "UTF-8 text, which a TCTI must be",
                             hint="choose a --state path of printable UTF-8 characters")
        if len(os.fsencode(self.ctrl_path)) > _MAX_SOCKET_PATH:
            raise SimulatorError(
                f"state folder path too long for a unix socket: {self.ctrl_path}",
                hint=f"choose a shorter --state path: at most "
                     f"{_MAX_SOCKET_PATH - len(str(self.ctrl_path)) + len(str(self.state_dir))} "
                     f"bytes made absolute (a socket path is limited to {_MAX_SOCKET_PATH} bytes)",
            )

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _live_pid(self) -> int | None:
        pid = self._read_pid()
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        # A recycled pid belongs to some other program; only ours counts.
        if not cmdline or not cmdline[0].endswith(b"swtpm"):
            return None
        if os.fsencode(self.socket_path) not in b" ".join(cmdline):
            return None
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return None
        except (OSError, IndexError):
            return None
        return pid

    def _answers(self) -> bool:
        for path in (self.socket_path, self.ctrl_path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                try:
                    sock.connect(str(path))
                except OSError:
                    return False
        return True

    def _clean_stale(self) -> None:
        for path in (self.pid_file, self.socket_path, self.ctrl_path):
            path.unlink(missing_ok=True)

    def _terminate(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not _wait_gone(pid, STOP_TIMEOUT_S):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, STOP_TIMEOUT_S)

    def _kill_strays(self) -> None:
        """SIGKILL every swtpm or swtpm_setup process whose command line names this state
        folder (the daemon, or swtpm_setup and the swtpm it runs)."""
        for pid in self._strays():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, STOP_TIMEOUT_S)

    def _strays(self) -> list[int]:
        """swtpm and swtpm_setup processes naming this folder's sockets or TPM state."""
        paths = {os.fsencode(p) for p in (self.socket_path, self.ctrl_path, self.tpm_state,
                                            self.staging_dir / "tpm")}
        return _processes_naming(paths)

    @staticmethod
    def _tail(path: Path, lines: int = 5) -> str:
        try:
            return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _run_group(cmd: list[str], env: dict[str, str], timeout: float,
               what: str) -> tuple[int, str]:
    """Run ``cmd`` in a process group of its own; kill the whole group unless it ends by
    itself: swtpm_setup runs a swtpm of its own that killing swtpm_setup alone would
    leave behind (it is also out of reach of the terminal's Ctrl-C, which we handle)."""
    process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(process)
        raise SimulatorError(f"{what} did not finish in {timeout:.0f} s") from exc
    except BaseException:
        _kill_group(process)
        raise
    # No group kill once the leader is reaped: its id could be another's by then.
    return process.returncode, stderr


def _kill_group(process: subprocess.Popen[str]) -> None:
    # The leader is not reaped yet (even if it exited), so the group id is still ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.communicate(timeout=STOP_TIMEOUT_S)


def _processes_naming(paths: set[bytes]) -> list[int]:
    """The swtpm and swtpm_setup processes with one of ``paths`` as an argument or an
    option's value (``dir=PATH``, ``type=unixio,path=PATH``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and os.path.basename(cmdline[0]) in (b"swtpm", b"swtpm_setup") \
                and any(_path_of(token) in paths for arg in cmdline for token in arg.split(b",")):
            found.append(int(entry.name))
    return found


def _path_of(token: bytes) -> bytes:
    # PATH, dir=PATH, path=PATH, backend-uri=dir://PATH (swtpm_setup's own swtpm)
    value = token.rsplit(b"=", 1)[-1]
    return value.removeprefix(b"dir://")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive across processes: two starts on one folder would kill each other's."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _require_tools() -> None:
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        raise SimulatorError(f"missing simulator tools: {', '.join(missing)}", hint=_INSTALL_HINT)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Reap it if it is our child; otherwise just probe.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.005)
    return False
