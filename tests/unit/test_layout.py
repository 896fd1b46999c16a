"""The house rules, checked on the source tree (README "Layout"):

- every installed Python module is reached from the command line's entry
  point: nothing is installed only for the tests;
- no module is longer than 600 lines;
- every map's name is spelt, as a string, in its owner module only (the
  module that declares its MapSpec), and in the C only in xdp/maps.h;
- detection is pure: nothing under control/detect/ imports the kernel side.
"""

from __future__ import annotations

import ast
import os
import re

import pytest

from seawall.control.datapath import loader

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
PACKAGES = {"seawall.control": "control", "seawall.cli": "cli"}
MAX_LINES = 600


def modules() -> dict:
    """{dotted name: path} of every installed Python module."""
    out = {}
    for pkg, folder in PACKAGES.items():
        root = os.path.join(REPO, folder)
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].replace(os.sep, ".")
                    name = pkg if rel == "__init__" else f"{pkg}.{rel.removesuffix('.__init__')}"
                    out[name] = os.path.join(dirpath, f)
    return out


def imports(name: str, path: str, known: dict) -> set:
    """The project modules a module imports, anywhere in it (lazy imports too)."""
    tree = ast.parse(open(path).read(), path)
    pkg = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    # a module's parents are imported with it
    return {m for m in out for m in [m] if m in known} | {p for m in out if m in known
                                                          for p in _parents(m) if p in known}


def _parents(name: str) -> list:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def test_every_installed_module_is_reached_from_the_entry_point():
    known = modules()
    seen, todo = set(), ["seawall.cli.main"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += list(imports(m, known[m], known))
    assert set(known) - seen == set(), "installed but reached by no command"


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_longer_than_600_lines(name):
    n = sum(1 for _ in open(modules()[name]))
    assert n <= MAX_LINES, f"{name}: {n} lines"


def owner_of(spec) -> str:
    for name, path in modules().items():
        src = open(path).read()
        if re.search(rf"MapSpec\(\s*f?\"{re.escape(spec.name)}\"", src) or \
                re.search(r"MapSpec\(f\"\{lst\}_sum_v\{v\}\"", src) and "_sum_v" in spec.name:
            return name
    raise AssertionError(f"no module declares map {spec.name}")


_OPENERS = {"join", "open_pinned", "Map", "MapSpec", "pinned_map_id", "obj_get"}


def spells(src: str, name: str) -> bool:
    """Does the source name a map called `name`? A name with an underscore
    (block_v4, sig_meta) as any string; a plain word (stats, config, which
    are also JSON keys and command names) where it opens or pins a map:
    an argument of os.path.join, open_pinned, Map or MapSpec, or a path
    ending in it."""
    if "_" in name:
        return re.search(rf"[\"']{re.escape(name)}[\"'/]", src) is not None
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Call):
            f = node.func
            fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if fname in _OPENERS and any(isinstance(a, ast.Constant) and a.value == name for a in node.args):
                return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith("/" + name):
            return True
    return False


@pytest.mark.parametrize("spec", loader.MAPS, ids=lambda s: s.name)
def test_a_map_name_is_spelt_by_its_owner_only(spec):
    owner = owner_of(spec)
    spelt = {name for name, path in modules().items() if spells(open(path).read(), spec.name)}
    assert spelt <= {owner}, f"{spec.name} spelt outside {owner}: {sorted(spelt - {owner})}"
    c_files = {f for f in os.listdir(os.path.join(REPO, "xdp")) if f.endswith((".c", ".h"))}
    in_c = {f for f in c_files if re.search(rf"\b{spec.name}\b", open(os.path.join(REPO, "xdp", f)).read())}
    assert "maps.h" in in_c, f"{spec.name} is not declared in xdp/maps.h"


def test_the_spelling_check_finds_a_stray_name():
    assert spells('m = bpf.Map.open_pinned(os.path.join(d, "stats"))', "stats")
    assert spells('p = pin_root + "/config"', "config")
    assert spells('names = ("block_v4", "block_v6")', "block_v4")
    assert not spells('out = {"events": n}', "events")
    assert not spells('@click.group("config")\ndef g(): pass', "config")


def test_detection_does_not_touch_the_kernel():
    known = modules()
    for name, path in known.items():
        if name.startswith("seawall.control.detect"):
            kernel = {m for m in imports(name, path, known) if m.startswith("seawall.control.datapath")}
            assert kernel <= {"seawall.control.datapath", "seawall.control.datapath.abi"}, (name, kernel)
