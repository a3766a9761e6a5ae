# shellcheck shell=bash
# Shared by scripts/quickstart, scripts/test and .ci/run: install what is missing.
# Sourced, not run; expects to be in the repository root.

# postgresql: the tests start a real server (tests/pg.py) for the store on PostgreSQL and
# the service's replicas; libpq5 for psycopg without its bundled binary.
ATTEST_DEBS=(swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config gcc openssl postgresql libpq5)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: need root to run: $*" >&2; return 1; fi
}

ensure_debs() {
    local missing=() pkg
    local wanted=("${ATTEST_DEBS[@]}")
    # Debian's own python3 needs these for a venv and for building tpm2-pytss.
    if ! python3 -c 'import ensurepip' 2>/dev/null; then wanted+=(python3-venv); fi
    if [ ! -e "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
        wanted+=(python3-dev)
    fi
    for pkg in "${wanted[@]}"; do
        # Not `dpkg -s`: it succeeds for a removed package whose config files remain.
        [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ] || [ "${ATTEST_FORCE_APT_UPDATE:-}" = 1 ]; then
        say "installing Debian packages: ${missing[*]:-(none missing)}"
        as_root apt-get update -q
        [ "${#missing[@]}" -eq 0 ] || DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

ensure_venv() {
    local extras="${1:-}"  # as pip takes them: host,server
    # One stamp per set of extras (.attest-installed-host,server): a venv installed for
    # other extras is installed again.
    local stamp=".venv/.attest-installed${extras:+-$extras}"
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv"
        python3 -m venv .venv
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
        say "installing attest into .venv${extras:+ (extras: $extras)}"
        # The exact versions of constraints.txt (scripts/lock), build dependencies included:
        # a new release elsewhere changes nothing here until the pins move.
        .venv/bin/python -m pip install -q -c constraints.txt pip setuptools
        .venv/bin/python -m pip install -q -c constraints.txt --build-constraint constraints.txt \
            -e ".${extras:+[$extras]}"
        # Which pins this venv has (tests/unit/test_pins.py then checks every version).
        sha256sum constraints.txt | cut -d' ' -f1 >.venv/.attest-pinned
        touch "$stamp"
    fi
}
