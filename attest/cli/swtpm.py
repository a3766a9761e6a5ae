"""`attest swtpm`: a simulator for machines without a TPM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from attest.cli.failure import json_option
from attest.cli.terminal import visible
from attest.errors import EXIT_REFUSED
from attest.simulator import Simulator

_STATE = click.option("--state", "state", required=True,
                      type=click.Path(file_okay=False, path_type=Path),
                      help="Folder for the simulator's TPM state, local CA, sockets and log.")


@click.group()
def swtpm() -> None:
    """Run the swtpm simulator (a TPM for CI and development).

    \b
    export ATTEST_TCTI=$(attest swtpm start --state ./.attest/swtpm)
    attest swtpm status --state ./.attest/swtpm
    attest swtpm stop --state ./.attest/swtpm
    """


@swtpm.command()
@_STATE
@json_option(help='Print {"ok", "tcti", "started", "state"}.')
def start(state: Path, as_json: bool) -> None:
    """Provision (first use), start, and print the TCTI alone on stdout."""
    sim = Simulator(state)
    sim.check_socket_path()  # refused before anything is said, made or started
    if sim.interrupted:
        click.echo(f"an earlier provisioning of {visible(sim.state_dir)} was interrupted; "
                   "provisioning it again ...", err=True)
    elif not sim.provisioned:
        click.echo(f"provisioning a new simulator in {visible(sim.state_dir)} ...", err=True)
    # SIGTERM, like Ctrl-C, stops the start where it is: Simulator.start then kills the
    # swtpm processes it started and leaves no half-made state.
    with _terminate_as_interrupt():
        tcti, started = sim.start()
    said = "started" if started else "already running"
    click.echo(f"{said}: {visible(sim.status().describe())}", err=True)
    if as_json:
        from attest.cli.common import echo_json

        echo_json({"ok": True, "tcti": tcti, "started": started, "state": str(sim.state_dir)})
        return
    click.echo(tcti)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@swtpm.command()
@_STATE
@json_option(help='Print {"ok", "stopped", "state"}.')
def stop(state: Path, as_json: bool) -> None:
    """Shut the TPM down cleanly (TPM2_Shutdown), then stop the process."""
    sim = Simulator(state)
    stopped = sim.stop()
    if as_json:
        from attest.cli.common import echo_json

        echo_json({"ok": True, "stopped": stopped, "state": str(sim.state_dir)})
    elif stopped:
        click.echo(f"stopped the simulator in {visible(sim.state_dir)}", err=True)
    else:
        click.echo(f"no simulator running in {visible(sim.state_dir)}", err=True)


@swtpm.command()
@_STATE
@json_option(help="Machine-readable output.")
def status(state: Path, as_json: bool) -> None:
    """Say whether the simulator is provisioned and running; exit 1 when it is not running."""
    sim = Simulator(state)
    st = sim.status()
    if as_json:
        from attest.cli.common import echo_json

        echo_json({"state": str(st.state_dir), "provisioned": st.provisioned,
                   "running": st.running, "pid": st.pid, "tcti": st.tcti,
                   "interrupted": st.interrupted, "strays": list(st.strays),
                   "root_ca": str(sim.root_ca_cert)})
    else:
        click.echo(visible(st.describe()))
    if not st.running:
        raise SystemExit(EXIT_REFUSED)
