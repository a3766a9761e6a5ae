"""The operator console: read-only pages under ``/ui/`` on `attest serve` (issue 17).

Design: docs/console-design.md. :mod:`.session` turns an admin token into a cookie
session (pure), :mod:`.html` writes pages with every value escaped, :mod:`.routes`
mounts the pages on the service. Imports no TSS: the verifier side runs without it.
"""
