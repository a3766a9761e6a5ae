"""The environment variables that inject code (attest.host.runtime.environment says
why they are removed). Apart, and with no imports, so that the thin `attest run`
(attest.host.agent.client) scrubs with the very same list at no import cost."""

from __future__ import annotations

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


def injects_code(name: str) -> bool:
    """Whether ``name`` is a variable attest run removes unless the scope keeps it."""
    return name in INJECTING or name.startswith(INJECTING_PREFIXES)
