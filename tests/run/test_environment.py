"""Which variables attest run removes, and how --keep-env names the ones it keeps."""

from __future__ import annotations

import hashlib

import pytest

from attest.errors import UsageError
from attest.host.runtime.environment import injects_code, kept_variables, scrubbed

HOSTILE = {"LD_PRELOAD": "/tmp/x.so", "LD_AUDIT": "/tmp/a.so", "LD_ANYTHING_NEW": "1",
           "BASH_ENV": "/tmp/rc", "ENV": "/tmp/rc", "BASH_FUNC_ls%%": "() { evil; }",
           "PYTHONPATH": "/tmp", "PYTHONSTARTUP": "/tmp/s.py", "PERL5OPT": "-Mevil",
           "NODE_OPTIONS": "--require /tmp/e.js", "GCONV_PATH": "/tmp", "OPENSSL_CONF": "/tmp/c"}


def test_every_injecting_variable_is_removed_and_the_rest_kept() -> None:
    out = scrubbed({**HOSTILE, "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8"}, {})
    assert out == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    assert all(injects_code(name) for name in HOSTILE)


def test_a_kept_variable_passes_only_with_the_value_the_artifact_names() -> None:
    kept = kept_variables(HOSTILE, ["LD_PRELOAD"])
    assert kept == {"LD_PRELOAD": hashlib.sha256(b"/tmp/x.so").hexdigest()}
    assert scrubbed(HOSTILE, kept) == {"LD_PRELOAD": "/tmp/x.so"}
    assert scrubbed({**HOSTILE, "LD_PRELOAD": "/tmp/other.so"}, kept) == {}


@pytest.mark.parametrize(("names", "says"), [
    (["HOME"], "not a variable attest run removes"),
    (["LD_DEBUG"], "not set"),
    (["A=B"], "not a variable name"),
    ([f"LD_{i}" for i in range(33)], "at most"),
])
def test_keep_env_refuses_what_would_say_nothing(names: list[str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        kept_variables({**HOSTILE, "HOME": "/root"}, names)


# Found by the red team after issue 10 item 5: injection points of the listed programs
# under names the list missed (Lua's versioned names are read before LUA_INIT; tclsh
# sources $TCL_LIBRARY/init.tcl; zsh sources $ZDOTDIR/.zshenv for every script; Python
# loads compiled modules from PYTHONPYCACHEPREFIX), and other well-known ones.
@pytest.mark.parametrize("name", [
    "LUA_INIT_5_4", "LUA_PATH_5_3", "LUA_CPATH_5_2", "TCL_LIBRARY", "TK_LIBRARY", "ZDOTDIR",
    "PYTHONPYCACHEPREFIX", "PHPRC", "PHP_INI_SCAN_DIR", "DOTNET_STARTUP_HOOKS",
    "CORECLR_PROFILER_PATH_64", "GIT_SSH_COMMAND", "GIT_CONFIG_KEY_0", "GIT_EXEC_PATH",
    "LESSOPEN", "GTK_MODULES", "GST_PLUGIN_PATH",
])
def test_more_injection_points_are_removed(name: str) -> None:
    assert injects_code(name)
    assert scrubbed({name: "/tmp/evil", "PATH": "/usr/bin"}, {}) == {"PATH": "/usr/bin"}
