"""The environment `attest run` hands to CMD: without the variables that inject code.

A measured executable is not all that runs: the dynamic loader, shells and
interpreters read variables that load or run other code (``LD_PRELOAD`` puts a
library inside any dynamically linked program, ``BASH_ENV`` runs a file before
a bash script, ``PYTHONSTARTUP``/``PYTHONPATH`` run or shadow Python code). The
verifier never sees the environment, so these variables are removed unless the
artifact's scope names them (``attest run --keep-env NAME``: the scope then
carries the name and the SHA-256 of the value, signed, verified and audited).

The list is of well-known injection points, not of every variable some program
reads; docs/measurement.md names it and what it leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

from attest.errors import UsageError

# Whole families: the dynamic loader (glibc, musl, macOS), exported bash functions,
# Lua's versioned names (LUA_INIT_5_4 is read before LUA_INIT), the .NET profilers,
# git's configuration given in the environment, GStreamer's plugin folders.
INJECTING_PREFIXES = ("LD_", "DYLD_", "BASH_FUNC_", "LUA_INIT", "LUA_PATH", "LUA_CPATH",
                      "CORECLR_PROFILER", "COR_PROFILER", "GIT_CONFIG_", "GST_PLUGIN_")
INJECTING = frozenset({
    # glibc: loadable conversion modules, loader tunables
    "GCONV_PATH", "GLIBC_TUNABLES",
    # shells: startup files, options, code run for prompts and traces; zsh reads
    # $ZDOTDIR/.zshenv for every zsh, scripts included
    "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "ZDOTDIR",
    # Python: startup file, module search, user site, warning categories (imported),
    # a folder of compiled modules it loads instead of __pycache__
    "PYTHONSTARTUP", "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONWARNINGS",
    "PYTHONINSPECT", "PYTHONBREAKPOINT", "PYTHONPYCACHEPREFIX", "PYTHONEXECUTABLE",
    # Perl, Ruby, Node, Tcl/Tk (tclsh sources $TCL_LIBRARY/init.tcl), PHP
    "PERL5OPT", "PERL5LIB", "PERLLIB", "PERL5DB", "RUBYOPT", "RUBYLIB",
    "NODE_OPTIONS", "NODE_PATH", "TCLLIBPATH", "TCL_LIBRARY", "TK_LIBRARY",
    "PHPRC", "PHP_INI_SCAN_DIR",
    # the JVM and .NET
    "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
    "DOTNET_STARTUP_HOOKS", "DOTNET_ADDITIONAL_DEPS",
    # OpenSSL loads engines and providers named in its configuration
    "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES",
    # git runs these commands, helpers and hooks
    "GIT_EXEC_PATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS", "GIT_EXTERNAL_DIFF",
    "GIT_PAGER", "GIT_EDITOR", "GIT_PROXY_COMMAND", "GIT_CONFIG", "GIT_TEMPLATE_DIR",
    # programs other programs run on their input or for a password
    "LESSOPEN", "LESSCLOSE", "SSH_ASKPASS", "SUDO_ASKPASS",
    # GUI toolkits' plugin modules
    "GTK_MODULES", "GTK3_MODULES", "GTK_PATH", "GIO_EXTRA_MODULES", "QT_PLUGIN_PATH",
    "GDK_PIXBUF_MODULE_FILE",
})
# What a kept variable may be called: the verifier shows it, so keep it plain.
MAX_KEPT = 32
MAX_NAME_CHARS = 128


def injects_code(name: str) -> bool:
    """Whether ``name`` is a variable attest run removes unless the scope keeps it."""
    return name in INJECTING or name.startswith(INJECTING_PREFIXES)


def kept_variables(environ: Mapping[str, str], keep: Collection[str]) -> dict[str, str]:
    """For ``--keep-env``: each named injecting variable's SHA-256 (hex), as the scope
    names it. Names that are not injecting, or not set, are a usage error: keeping
    them would put a claim in the artifact that says nothing."""
    if len(keep) > MAX_KEPT:
        raise UsageError(f"--keep-env: at most {MAX_KEPT} variables")
    kept: dict[str, str] = {}
    for name in keep:
        if not name or len(name) > MAX_NAME_CHARS or "=" in name or not name.isprintable():
            raise UsageError(f"--keep-env {name!r}: not a variable name")
        if not injects_code(name):
            raise UsageError(f"--keep-env {name}: not a variable attest run removes",
                             hint="only the code-injecting ones (docs/measurement.md) need it")
        if name not in environ:
            raise UsageError(f"--keep-env {name}: not set")
        kept[name] = hashlib.sha256(environ[name].encode("utf-8", "surrogateescape")).hexdigest()
    return kept


def scrubbed(environ: Mapping[str, str], kept: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without injecting variables, except those ``kept`` names with the
    digest of their current value (a value changed since the artifact was made is
    dropped too)."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if injects_code(name):
            digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
            if kept.get(name) != digest:
                continue
        out[name] = value
    return out
