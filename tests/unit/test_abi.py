"""xdp/shared.h, tunables.h and maps.h against their Python mirror in
control/const.py. Parses the C with regexes (no compiler, no root).

Every comparison is a pure function returning a list of differences, so
the drift tests at the bottom can feed it an edited copy of either side
and check that the difference is reported.
"""

from __future__ import annotations

import ast
import ctypes
import enum
import operator
import re
from pathlib import Path

import pytest

import seawall.xdp
from seawall.control import const

XDP = Path(seawall.xdp.__file__).parent
SHARED_H = (XDP / "shared.h").read_text()
TUNABLES_H = (XDP / "tunables.h").read_text()
MAPS_H = (XDP / "maps.h").read_text()

# C enum -> (prefix of its members, its *_MAX member, Python enum, Python max)
ENUMS = {
    "sw_reason": ("SW_", "SW_REASON_MAX", const.Reason, const.REASON_MAX),
    "sw_event": ("SW_EV_", "SW_EVENT_MAX", const.Event, const.EVENT_MAX),
    "sw_feature": ("SW_FEAT_", "SW_FEATURE_MAX", const.Feature, const.FEATURE_MAX),
}

# structs the control plane reads or writes: each has a ctypes mirror in
# const.py named in CamelCase (sw_lpm_v4 -> SwLpmV4). These must exist; any
# other struct in shared.h needs a mirror too unless listed as kernel-only.
REQUIRED_STRUCTS = ("sw_counter", "sw_config", "sw_lpm_v4", "sw_lpm_v6", "sw_block", "sw_allow", "sw_source")
# scratch state the control plane never reads (token buckets)
KERNEL_ONLY_STRUCTS = {"sw_admit_bucket"}


def mirror_name(cname: str) -> str:
    return "".join(part.capitalize() for part in cname.split("_"))


# tunables the control plane needs; each must exist in both places
MIRRORED_TUNABLES = (
    "SRC_BUCKETS", "PORT_BUCKETS", "PROTO_BUCKETS", "LEN_CLASSES", "LEN_CLASS_WIDTH",
    "MAX_ALLOW_ENTRIES", "MAX_BLOCK_ENTRIES", "MAX_SOURCES_V4", "MAX_SOURCES_V6",
)

C_TYPES = {"__u8": 1, "__u16": 2, "__u32": 4, "__u64": 8, "__s8": 1, "__s16": 2, "__s32": 4, "__s64": 8}


# --- a small C reader ---------------------------------------------------------

def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_}


def c_eval(expr: str, env: dict) -> int:
    """Value of an integer constant expression such as (1U << 0) or
    (FEAT_OFF_SRC + SRC_BUCKETS); names are looked up in env."""
    expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr.strip())

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise ValueError(f"unknown name {node.id} in {expr!r}")
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"cannot evaluate {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


def parse_defines(text: str, env: dict = None) -> dict:
    """Every object-like #define with an integer value, in file order. A
    define inside #ifndef X is the default of X."""
    env = dict(env or {})
    out = {}
    for name, body in re.findall(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(.+?)[ \t]*$",
                                 strip_comments(text), flags=re.M):
        try:
            value = c_eval(body, env)
        except (ValueError, SyntaxError):
            continue  # strings, function-like helpers
        env[name] = out[name] = value
    return out


def parse_enums(text: str) -> dict:
    """enum name -> [(member, value), ...] in declaration order."""
    enums = {}
    for name, body in re.findall(r"\benum\s+(\w+)\s*\{(.*?)\}\s*;", strip_comments(text), flags=re.S):
        members, env, nxt = [], {}, 0
        for entry in body.split(","):
            entry = entry.strip()
            if not entry:
                continue
            m = re.fullmatch(r"(\w+)\s*(?:=\s*(.+))?", entry, flags=re.S)
            assert m, f"enum {name}: cannot parse {entry!r}"
            value = c_eval(m.group(2), env) if m.group(2) else nxt
            members.append((m.group(1), value))
            env[m.group(1)] = value
            nxt = value + 1
        enums[name] = members
    return enums


def parse_structs(text: str) -> dict:
    """struct name -> [(field, elem type, count), ...] in declaration order."""
    structs = {}
    for name, body in re.findall(r"\bstruct\s+(\w+)\s*\{(.*?)\}\s*;", strip_comments(text), flags=re.S):
        fields = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            m = re.fullmatch(r"(\w+) (\w+)(?: ?\[ ?(\d+) ?\])?", decl)
            assert m and m.group(1) in C_TYPES, f"struct {name}: cannot parse field {decl!r}"
            fields.append((m.group(2), m.group(1), int(m.group(3) or 1)))
        structs[name] = fields
    return structs


def c_layout(fields: list) -> tuple:
    """([(field, offset, size), ...], sizeof) with natural alignment."""
    out, off, align = [], 0, 1
    for fname, ctype, count in fields:
        a = C_TYPES[ctype]
        off = (off + a - 1) // a * a
        out.append((fname, off, a * count))
        off += a * count
        align = max(align, a)
    return out, (off + align - 1) // align * align


def py_layout(cls) -> tuple:
    return [(f[0], getattr(cls, f[0]).offset, getattr(cls, f[0]).size) for f in cls._fields_], ctypes.sizeof(cls)


# --- comparisons: each returns a list of differences -------------------------

def enum_diffs(header: str, enums: dict = ENUMS) -> list:
    parsed = parse_enums(header)
    diffs = []
    for cname, (prefix, max_name, py_enum, py_max) in enums.items():
        if cname not in parsed:
            diffs.append(f"enum {cname} missing from shared.h")
            continue
        members = parsed[cname]
        if not members or members[-1][0] != max_name:
            diffs.append(f"enum {cname}: last member must be {max_name}")
            continue
        c_members = [(n[len(prefix):] if n.startswith(prefix) else n, v) for n, v in members[:-1]]
        py_members = [(m.name, int(m.value)) for m in py_enum]
        if c_members != py_members:
            diffs.append(f"enum {cname}: C {c_members} != Python {py_enum.__name__} {py_members}")
        c_max = members[-1][1]
        if c_max != py_max:
            diffs.append(f"{max_name} = {c_max} but Python says {py_max}")
        # values index per-CPU arrays of *_MAX slots: they must be 0..MAX-1
        if [v for _, v in members[:-1]] != list(range(c_max)):
            diffs.append(f"enum {cname}: values are not 0..{max_name}-1")
    return diffs


def flag_diffs(header: str, mirror=const) -> list:
    """Every SW_* #define in shared.h has an equal mirror without SW_."""
    diffs = []
    flags = {n: v for n, v in parse_defines(header).items() if n.startswith("SW_")}
    if not flags:
        diffs.append("no SW_* flags found in shared.h")
    for name, value in flags.items():
        py = getattr(mirror, name[len("SW_"):], None)
        if py != value:
            diffs.append(f"{name} = {value:#x} but const.{name[3:]} = {py!r}")
    return diffs


def struct_diffs(header: str, mirror=const) -> list:
    parsed = parse_structs(header)
    diffs = [f"struct {c} missing from shared.h" for c in REQUIRED_STRUCTS if c not in parsed]
    for cname, fields in parsed.items():
        if cname in KERNEL_ONLY_STRUCTS:
            continue
        cls = getattr(mirror, mirror_name(cname), None)
        if cls is None:
            diffs.append(f"struct {cname} has no ctypes mirror {mirror_name(cname)} in const.py")
            continue
        c_fields, c_size = c_layout(fields)
        p_fields, p_size = py_layout(cls)
        if c_fields != p_fields:
            diffs.append(f"struct {cname}: C (field, offset, size) {c_fields} != {cls.__name__} {p_fields}")
        if c_size != p_size:
            diffs.append(f"sizeof(struct {cname}) = {c_size} but sizeof({cls.__name__}) = {p_size}")
    return diffs


def tunable_diffs(tunables: str, mirror=const, names=MIRRORED_TUNABLES) -> list:
    c = parse_defines(tunables)
    diffs = []
    for name in names:
        if name not in c:
            diffs.append(f"{name} missing from tunables.h")
        elif getattr(mirror, name, None) != c[name]:
            diffs.append(f"{name} = {c[name]} in tunables.h but {getattr(mirror, name, None)!r} in const.py")
    # a tunable mirrored in const.py but not listed above is still checked
    for name, value in c.items():
        if name not in names and hasattr(mirror, name) and getattr(mirror, name) != value:
            diffs.append(f"{name} = {value} in tunables.h but {getattr(mirror, name)!r} in const.py")
    return diffs


def feature_layout_diffs(maps: str, tunables: str, offsets: dict, slots: int) -> list:
    c = parse_defines(maps, parse_defines(tunables))
    diffs = []
    for feat, off in offsets.items():
        key = f"FEAT_OFF_{feat.name}"
        if c.get(key) != off:
            diffs.append(f"{key} = {c.get(key)} in maps.h but feature_offsets() says {off}")
    extra = {k for k in c if k.startswith("FEAT_OFF_")} - {f"FEAT_OFF_{f.name}" for f in offsets}
    if extra:
        diffs.append(f"maps.h has offsets {sorted(extra)} that const.Feature lacks")
    if c.get("FEAT_SLOTS") != slots:
        diffs.append(f"FEAT_SLOTS = {c.get('FEAT_SLOTS')} in maps.h but const.FEATURE_SLOTS = {slots}")
    return diffs


# --- the checks ---------------------------------------------------------------

def test_enums_match():
    assert enum_diffs(SHARED_H) == []


def test_all_three_enums_are_parsed_with_members():
    parsed = parse_enums(SHARED_H)
    assert set(ENUMS) <= set(parsed)
    for cname, (_, _, py_enum, _) in ENUMS.items():
        assert len(parsed[cname]) == len(py_enum) + 1, cname


def test_flags_match():
    assert flag_diffs(SHARED_H) == []


def test_named_flags_are_parsed():
    flags = parse_defines(SHARED_H)
    assert flags["SW_CFG_MONITOR"] == const.CFG_MONITOR == 1
    assert flags["SW_BLOCK_AUTO"] == const.BLOCK_AUTO == 1


def test_structs_match():
    assert struct_diffs(SHARED_H) == []


def test_required_structs_are_parsed_and_mirrored():
    parsed = parse_structs(SHARED_H)
    for cname in REQUIRED_STRUCTS:
        assert parsed.get(cname), cname
        assert [f[0] for f in parsed[cname]] == [f[0] for f in getattr(const, mirror_name(cname))._fields_]


def test_lpm_key_sizes():
    """LPM trie keys are a u32 prefix length and the address, unpadded."""
    structs = parse_structs(SHARED_H)
    assert c_layout(structs["sw_lpm_v4"])[1] == ctypes.sizeof(const.SwLpmV4) == 4 + 4
    assert c_layout(structs["sw_lpm_v6"])[1] == ctypes.sizeof(const.SwLpmV6) == 4 + 16


def test_tunables_match():
    assert tunable_diffs(TUNABLES_H) == []


def test_feature_layout_matches_maps_h():
    assert feature_layout_diffs(MAPS_H, TUNABLES_H, const.feature_offsets(), const.FEATURE_SLOTS) == []


def test_every_feature_has_a_size():
    assert list(const.FEATURE_SIZES) == list(const.Feature)
    assert const.FEATURE_SLOTS == sum(const.FEATURE_SIZES.values())


def test_reason_verdicts_cover_every_reason():
    assert set(const.REASON_VERDICT) == set(const.Reason)
    assert set(const.REASON_VERDICT.values()) <= {"pass", "drop"}


# --- the checks catch drift (edited copies, in memory) -----------------------

def sub1(pattern: str, repl, text: str) -> str:
    """re.sub that must change exactly one place."""
    out, n = re.subn(pattern, repl, text, flags=re.M)
    assert n == 1, pattern
    return out


def _bump(m):  # "SW_X_MAX = n" -> "SW_X_MAX = n + 1"
    return f"{m.group(1)}{int(m.group(2)) + 1}"


ENUM_EDITS = {
    # a new reason in C only, max bumped as the C side would
    "reason added": lambda h: sub1(r"^(\s*)(SW_REASON_MAX\s*=\s*)(\d+)",
                                   lambda m: f"{m.group(1)}SW_DROP_NEW = {m.group(3)},\n"
                                             f"{m.group(1)}{m.group(2)}{int(m.group(3)) + 1}", h),
    # a new event in C only, max forgotten
    "event added, max stale": lambda h: sub1(r"^(\s*)(SW_EVENT_MAX)", r"\1SW_EV_NEW = 99,\n\1\2", h),
    # a feature without explicit values (C numbers it implicitly)
    "implicit member": lambda h: sub1(r"^(\s*)SW_FEATURE_MAX\s*=\s*\d+", r"\1SW_FEAT_NEW,\n\1SW_FEATURE_MAX", h),
    "max only": lambda h: sub1(r"(SW_EVENT_MAX\s*=\s*)(\d+)", _bump, h),
    "value changed": lambda h: sub1(r"(SW_FEAT_SPORT\s*=\s*)(\d+)", lambda m: f"{m.group(1)}99", h),
    "renamed": lambda h: sub1(r"\bSW_EV_VLAN\b", "SW_EV_QINQ", h),
    "member removed": lambda h: sub1(r"^\s*SW_PASS_NOT_IP\s*=\s*\d+,", "", h),
}


@pytest.mark.parametrize("edit", ENUM_EDITS, ids=str)
def test_enum_drift_in_header_is_caught(edit):
    edited = ENUM_EDITS[edit](SHARED_H)
    assert edited != SHARED_H
    assert enum_diffs(edited)


def test_enum_drift_in_python_is_caught():
    # a new member in Python only, max bumped
    names = [(m.name, int(m.value)) for m in const.Reason] + [("DROP_NEW", const.REASON_MAX)]
    grown = enum.IntEnum("Reason", names)
    assert enum_diffs(SHARED_H, dict(ENUMS, sw_reason=("SW_", "SW_REASON_MAX", grown, const.REASON_MAX + 1)))
    # only the max
    assert enum_diffs(SHARED_H, dict(ENUMS, sw_reason=("SW_", "SW_REASON_MAX", const.Reason, const.REASON_MAX + 1)))
    # a member missing
    shrunk = enum.IntEnum("Event", [(m.name, int(m.value)) for m in const.Event][:-1])
    assert enum_diffs(SHARED_H, dict(ENUMS, sw_event=("SW_EV_", "SW_EVENT_MAX", shrunk, const.EVENT_MAX)))


def test_flag_drift_is_caught():
    assert flag_diffs(sub1(r"(#define\s+SW_CFG_MONITOR\s+)\(1U << 0\)", r"\1(1U << 1)", SHARED_H))
    # a new flag in C only
    assert flag_diffs(sub1(r"^(struct sw_counter \{)", r"#define SW_BLOCK_NEW (1U << 1)\n\1", SHARED_H))


class _Mirror:
    """const with one attribute replaced."""

    def __init__(self, **over):
        self.__dict__.update(over)

    def __getattr__(self, name):
        return getattr(const, name)


def test_flag_drift_in_python_is_caught():
    assert flag_diffs(SHARED_H, _Mirror(BLOCK_AUTO=2))


STRUCT_EDITS = {
    "field added": lambda h: sub1(r"^(struct sw_block \{)", r"\1\n\t__u32 extra;", h),
    "field removed": lambda h: sub1(r"^\s*__u64 syns;[^\n]*\n", "", h),
    "type narrowed": lambda h: sub1(r"__u64 syns;", "__u32 syns;", h),
    "array size": lambda h: sub1(r"__u8 addr\[16\];", "__u8 addr[4];", h),
    "renamed": lambda h: sub1(r"(struct sw_allow \{\s*__u32 )prefixlen;", r"\1plen;", h),
    "reordered": lambda h: sub1(r"(struct sw_counter \{\s*)__u64 packets;(\s*)__u64 bytes;",
                                r"\1__u64 bytes;\2__u64 packets;", h),
    "new struct, no mirror": lambda h: sub1(r"^(#endif /\* SEAWALL_SHARED_H \*/)",
                                            r"struct sw_new {\n\t__u32 x;\n};\n\n\1", h),
    "required struct gone": lambda h: sub1(r"\bstruct sw_config \{", "struct sw_cfg2 {", h),
}


@pytest.mark.parametrize("edit", STRUCT_EDITS, ids=str)
def test_struct_drift_in_header_is_caught(edit):
    edited = STRUCT_EDITS[edit](SHARED_H)
    assert edited != SHARED_H
    assert struct_diffs(edited)


def test_struct_drift_in_python_is_caught():
    class SwBlock(ctypes.Structure):  # flags dropped
        _fields_ = const.SwBlock._fields_[:-1]

    class SwAllow(ctypes.Structure):  # same size, fields swapped
        _fields_ = list(reversed(const.SwAllow._fields_))

    assert struct_diffs(SHARED_H, _Mirror(SwBlock=SwBlock))
    assert struct_diffs(SHARED_H, _Mirror(SwAllow=SwAllow))


def test_struct_padding_is_computed():
    # u32 then u64: 4 bytes of padding, sizeof 16
    fields, size = c_layout([("a", "__u32", 1), ("b", "__u64", 1)])
    assert fields == [("a", 0, 4), ("b", 8, 8)] and size == 16
    # trailing padding to the largest member
    assert c_layout([("a", "__u64", 1), ("b", "__u8", 1)])[1] == 16
    assert c_layout([("a", "__u32", 1), ("b", "__u8", 16)])[1] == 20
    assert c_layout([("a", "__u8", 1), ("b", "__u16", 1)]) == ([("a", 0, 1), ("b", 2, 2)], 4)


def test_unknown_field_type_is_not_skipped():
    with pytest.raises(AssertionError, match="cannot parse field"):
        parse_structs("struct sw_x {\n\tstruct in6_addr a;\n};")


@pytest.mark.parametrize("name", MIRRORED_TUNABLES)
def test_tunable_drift_is_caught(name):
    edited = sub1(rf"^(#define {name}) (\d+)", lambda m: f"{m.group(1)} {int(m.group(2)) * 2}", TUNABLES_H)
    assert tunable_diffs(edited)
    assert tunable_diffs(TUNABLES_H, _Mirror(**{name: getattr(const, name) + 1}))


def test_feature_layout_drift_is_caught():
    offsets = const.feature_offsets()
    # maps.h grows a histogram in the middle
    grown = sub1(r"^#define FEAT_OFF_PROTO \((\w+) \+ (\w+)\)",
                 r"#define FEAT_OFF_NEW (\1 + \2)\n#define FEAT_OFF_PROTO (FEAT_OFF_NEW + 256)", MAPS_H)
    assert feature_layout_diffs(grown, TUNABLES_H, offsets, const.FEATURE_SLOTS)
    # the Python sizes disagree
    sizes = {**const.FEATURE_SIZES, const.Feature.PROTO: 128}
    assert feature_layout_diffs(MAPS_H, TUNABLES_H, const.feature_offsets(sizes), sum(sizes.values()))
    # the slot count alone
    assert feature_layout_diffs(MAPS_H, TUNABLES_H, offsets, const.FEATURE_SLOTS + 1)


def test_c_eval():
    assert c_eval("(1U << 4)", {}) == 16
    assert c_eval("1000000000ULL", {}) == 10 ** 9
    assert c_eval("(A + B)", {"A": 2, "B": 3}) == 5
    with pytest.raises(ValueError):
        c_eval("(A + 1)", {})
