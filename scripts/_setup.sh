# shellcheck shell=bash
# Shared by scripts/quickstart, scripts/test and .ci/run: install what is missing.
# Sourced, not run; expects to be in the repository root.

# postgresql: the tests start a real server (tests/pg.py) for the store on PostgreSQL and
# the service's replicas; libpq5 for psycopg without its bundled binary.
ATTEST_DEBS=(swtpm swtpm-tools tpm2-tools libtss2-dev pkg-config gcc openssl postgresql libpq5)

# colors_for FD: whether text for file descriptor FD may carry colors: only for a person
# at a terminal, not a dumb one, and never with NO_COLOR set to anything (no-color.org).
colors_for() { [ -z "${NO_COLOR:-}" ] && [ "${TERM:-}" != dumb ] && [ -t "$1" ]; }

# set_colors: the escape sequences the scripts print, empty when colors are off; decided
# once, when this file is sourced (inside $(...) stdout is never the terminal).
# DIM, STEP and OFF are for stdout; SAY_ON and SAY_OFF for say's stderr.
set_colors() {
    DIM='' STEP='' OFF='' SAY_ON='' SAY_OFF=''
    if colors_for 1; then DIM=$'\033[2m' STEP=$'\033[1;34m' OFF=$'\033[0m'; fi
    if colors_for 2; then SAY_ON=$'\033[1m' SAY_OFF=$'\033[0m'; fi
}
set_colors

say() { printf '%s==> %s%s\n' "$SAY_ON" "$*" "$SAY_OFF" >&2; }

# can_be_root: whether as_root can work here (root already, or sudo to ask with).
can_be_root() { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: need root to run: $*" >&2; return 1; fi
}

# root_hint PKG...: what a user who is not root and has no sudo is to ask for: the
# packages, and the command to run as root.
root_hint() {
    local install="apt-get update"
    [ "$#" -eq 0 ] || install+=" && apt-get install -y --no-install-recommends $*"
    {
        if [ "$#" -gt 0 ]; then echo "error: missing Debian packages: $*"
        else echo "error: the package lists are to be updated (ATTEST_FORCE_APT_UPDATE=1)"; fi
        echo "installing needs root, and this user is not root and has no sudo."
        echo "hint: as root (su -, or ask an administrator), run:"
        echo "    $install"
        echo "then run ${0##*/} again."
    } >&2
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
        if ! can_be_root; then root_hint "${missing[@]}"; return 1; fi
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
        # The pins were resolved for one Python (constraints.txt's header): on another,
        # markers may pick other dependencies, so the install takes pyproject's ranges
        # instead, and says so (tests/unit/test_pins.py checks pins only in a pinned venv).
        local pinned_for here
        pinned_for="$(sed -n 's/^# .*resolved on CPython \([0-9]*\.[0-9]*\),.*/\1/p' constraints.txt)"
        here="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        if [ "$pinned_for" = "$here" ]; then
            .venv/bin/python -m pip install -q -c constraints.txt pip setuptools
            .venv/bin/python -m pip install -q -c constraints.txt \
                --build-constraint constraints.txt -e ".${extras:+[$extras]}"
            # Which pins this venv has (tests/unit/test_pins.py then checks every version).
            sha256sum constraints.txt | cut -d' ' -f1 >.venv/.attest-pinned
        else
            say "constraints.txt pins CPython ${pinned_for:-?}; this is $here: installing" \
                "at pyproject.toml's ranges, unpinned (scripts/lock on this Python pins it)"
            .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
            rm -f .venv/.attest-pinned
        fi
        touch "$stamp"
    fi
}
