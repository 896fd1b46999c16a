"""Nothing from a packet, a capture, the config or the command line ever
reaches a shell or an interpreter: the control plane and the CLI have no
call that would run one. Checked on the syntax tree of every module in
control/ and cli/, so a new one is covered as soon as it exists:

- no os.system, os.popen, os.spawn*, os.exec*p* with a string, pty.spawn,
  subprocess.getoutput / getstatusoutput, asyncio.create_subprocess_shell;
- every subprocess.run / Popen / call / check_call / check_output takes an
  argument list (not a string, an f-string or a concatenation) and no
  shell=... other than shell=False;
- no eval, exec or compile of text.

The checker is tried on snippets that break each rule, so it can fail.
"""

from __future__ import annotations

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("control", "cli")

SHELL_CALLS = {"os.system", "os.popen", "os.spawnl", "os.spawnle", "os.spawnlp", "os.spawnlpe", "os.spawnv",
               "os.spawnve", "os.spawnvp", "os.spawnvpe", "pty.spawn", "subprocess.getoutput",
               "subprocess.getstatusoutput", "asyncio.create_subprocess_shell", "platform.popen", "commands.getoutput"}
SUBPROCESS = {"run", "Popen", "call", "check_call", "check_output"}
INTERPRETERS = {"eval", "exec", "compile", "__import__"}


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def stringy(node: ast.AST) -> bool:
    """A command given as text (which a shell, or an exec of a path, would parse)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return stringy(node.left) or stringy(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join"):
        return isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)
    return False


def violations(source: str, name: str = "<snippet>") -> list:
    tree = ast.parse(source, name)
    # names imported from subprocess / os (from subprocess import run)
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("subprocess", "os", "pty", "asyncio", "platform"):
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):  # import subprocess as sp
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn = dotted(node.func)
        head, _, rest = fn.partition(".")
        fn = aliases.get(fn) or (aliases[head] + "." + rest if rest and head in aliases else fn)
        where = f"{name}:{node.lineno}"
        if fn in SHELL_CALLS:
            out.append(f"{where}: {fn}() runs a shell")
        elif fn in INTERPRETERS:
            out.append(f"{where}: {fn}() interprets text")
        elif fn.startswith("os.exec") and node.args and stringy(node.args[0]) and fn.endswith(("p", "pe")):
            out.append(f"{where}: {fn}() of a string")
        elif fn.split(".")[-1] in SUBPROCESS and (fn.startswith("subprocess.") or fn in SUBPROCESS):
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    out.append(f"{where}: {fn}(shell=...)")
            cmd = node.args[0] if node.args else next((kw.value for kw in node.keywords if kw.arg == "args"), None)
            if cmd is not None and stringy(cmd):
                out.append(f"{where}: {fn}() of a string command")
    return out


def modules() -> list:
    out = []
    for pkg in PACKAGES:
        for root, _, files in os.walk(os.path.join(REPO, pkg)):
            out += [os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(out)


def test_the_modules_were_found():
    names = {os.path.relpath(m, REPO) for m in modules()}
    assert {"cli/main.py", "control/service/daemon.py", "control/datapath/loader.py", "control/tools/replay.py"} <= names


@pytest.mark.parametrize("path", modules(), ids=lambda p: os.path.relpath(p, REPO))
def test_no_shell_and_no_interpreter(path):
    with open(path, encoding="utf-8") as f:
        assert violations(f.read(), os.path.relpath(path, REPO)) == []


@pytest.mark.parametrize("snippet", [
    "import os\nos.system('ip link')",
    "import os\nos.popen('ip link').read()",
    "import subprocess\nsubprocess.run('ip link show ' + dev, shell=True)",
    "import subprocess\nsubprocess.run(['ip', 'link'], shell=True)",
    "import subprocess\nsubprocess.run(cmd, shell=flag)",
    "import subprocess\nsubprocess.Popen(f'trafgen --dev {dev}')",
    "import subprocess\nsubprocess.check_output('tc qdisc show %s' % dev)",
    "import subprocess\nsubprocess.call(' '.join(argv))",
    "from subprocess import run\nrun('ls', shell=True)",
    "from subprocess import getoutput\ngetoutput('ls')",
    "import subprocess as sp\nsp.getstatusoutput('ls')",
    "import asyncio\nasyncio.create_subprocess_shell('ls')",
    "eval(reason)",
    "exec(config_text)",
    "import os\nos.execlp('sh', 'sh', '-c', text)",
])
def test_the_checker_catches(snippet):
    assert violations(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import subprocess\nsubprocess.run(['ip', '-j', 'link', 'show', 'dev', dev], capture_output=True)",
    "import subprocess\nsubprocess.run([sys.executable, '-m', 'x', arg], shell=False)",
    "import subprocess\nsubprocess.Popen([*ns, *cmd], stdout=subprocess.PIPE)",
    "re.compile(r'(\\d+)')",
])
def test_the_checker_lets_argument_lists_through(snippet):
    assert violations(snippet) == [], snippet
