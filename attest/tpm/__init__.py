"""The only package that opens an ESAPI: TCTI selection, identity, keys, PCRs, quotes."""

import os

# libtss2 prints every failed command to stderr; attest reports errors itself.
os.environ.setdefault("TSS2_LOG", "all+NONE")
