"""The service's OpenAPI document, as the repository keeps it: docs/openapi.json.

The file is what reviewers read when the API changes: a test holds the application's
document to it (tests/server/test_openapi.py), so a change to a route, a body or an
answer fails CI until the file is regenerated and the difference reviewed:

    python -m attest.server.openapi            # rewrite docs/openapi.json
    python -m attest.server.openapi --check    # exit 1 if it differs (what CI runs)

(``scripts/openapi`` runs the same from a checkout.) The document is the one a running
service serves at /v1/openapi.json; the routes do not depend on the policy or the
store, so it is built here on a throwaway store with a placeholder policy. Rendered
with sorted keys and a fixed indent: the same application, the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def document() -> dict[str, Any]:
    """The application's OpenAPI document (what GET /v1/openapi.json answers)."""
    from attest.policy import render_policy
    from attest.policy.load import parse_policy
    from attest.server.app import create_app
    from attest.store import default_url

    with tempfile.TemporaryDirectory(prefix="attest-openapi-") as folder:
        home = Path(folder)
        text = render_policy(policy_id="openapi", sealed_values={0: bytes(32)})
        policy = parse_policy(text.encode(), source="<openapi>", base_dir=home)
        app = create_app(policy, default_url(home), home)
        try:
            found: dict[str, Any] = app.openapi()
        finally:
            app.state.service.close()
    return found


def render(found: dict[str, Any]) -> str:
    """The document as the repository keeps it: sorted keys, two-space indent, LF."""
    return json.dumps(found, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attest.server.openapi",
                                     description="Write or check docs/openapi.json.")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the file differs from the application's document")
    args = parser.parse_args(argv)
    wanted = render(document())
    if args.check:
        try:
            current = args.path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{args.path}: {exc.strerror}", file=sys.stderr)
            return 1
        if current != wanted:
            print(f"{args.path} differs from the application's OpenAPI document; run "
                  "python -m attest.server.openapi and review the difference", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
