"""The only package that opens an ESAPI: TCTI selection, identity, keys, PCRs, quotes.

The host side: it needs tpm2-pytss and libtss2, the `host` extra. The verifier side
(verify, challenge, revoke, audit, quote verify, ek verify, eventlog replay) never
imports this package, so a control plane installs neither.
"""

import os

from attest.errors import TSSUnavailable

# libtss2 prints every failed command to stderr; attest reports errors itself.
os.environ.setdefault("TSS2_LOG", "all+NONE")

try:
    import tpm2_pytss  # noqa: F401 - only to learn, once, whether the TSS is there
except ImportError as exc:  # the package, or the libtss2 its extension module links
    raise TSSUnavailable(str(exc)) from exc
