"""`python -m attest`: the `attest` command, for an install whose scripts folder is not
on PATH (a venv not activated, `pip install --user`) and for `python3 -m attest` in
scripts that name their interpreter."""

from __future__ import annotations

import sys

from attest.cli.thin import maybe_thin_run

# As the `attest` script does: `attest run` through an agent before the CLI is imported.
maybe_thin_run(sys.argv[1:])

from attest.cli.main import main  # noqa: E402 - after the thin run, which may exec

main()
