"""Python mirror of xdp/shared.h and xdp/tunables.h.

tests/unit/test_abi.py parses the C header and fails when this file and the
header drift apart. Keep the two in the same order.
"""

from __future__ import annotations

import ctypes
import enum


class Reason(enum.IntEnum):
    """enum sw_reason: why a packet got its verdict."""

    PASS_CLEAN = 0
    PASS_ALLOW = 1
    DROP_BLOCK = 2
    MON_BLOCK = 3
    PASS_NOT_IP = 4
    PASS_MALFORMED = 5
    DROP_SIG = 6
    MON_SIG = 7


REASON_MAX = 8

#: verdict each reason stands for (monitor-mode would-drops pass)
REASON_VERDICT = {
    Reason.PASS_CLEAN: "pass",
    Reason.PASS_ALLOW: "pass",
    Reason.DROP_BLOCK: "drop",
    Reason.MON_BLOCK: "pass",
    Reason.PASS_NOT_IP: "pass",
    Reason.PASS_MALFORMED: "pass",
    Reason.DROP_SIG: "drop",
    Reason.MON_SIG: "pass",
}


class Event(enum.IntEnum):
    """enum sw_event: accounting events, not verdicts."""

    SRC_HIT = 0
    SRC_INSERT = 1
    SRC_DEFERRED = 2
    SRC_BUDGET = 3
    L4_UNPARSED = 4
    FRAGMENT = 5
    BLOCK_EXPIRED = 6
    IP_OPTIONS = 7
    IPV6_EXT = 8
    VLAN = 9


EVENT_MAX = 10


class Feature(enum.IntEnum):
    """enum sw_feature: feature histograms, back to back in one array."""

    SRC = 0
    DPORT = 1
    SPORT = 2
    PROTO = 3
    LEN = 4
    FLAGS = 5


FEATURE_MAX = 6

CFG_MONITOR = 1 << 0
SIG_ACTIVE = 1 << 0
SIG_DPORT = 1 << 1
SIG_SPORT = 1 << 2
SIG_LEN = 1 << 3
SIG_FLAGS = 1 << 4
BLOCK_AUTO = 1 << 0
LISTS_SUMMARISED = 1 << 0

# tunables.h defaults that the control plane needs to know
SRC_BUCKETS = 4096
PORT_BUCKETS = 65536
PROTO_BUCKETS = 256
LEN_CLASSES = 16
LEN_CLASS_WIDTH = 128  # bytes
FLAG_BUCKETS = 64
MAX_SIGNATURES = 16
MAX_ALLOW_ENTRIES = 16384
MAX_BLOCK_ENTRIES = 131072
MAX_SOURCES_V4 = 65536
MAX_SOURCES_V6 = 16384
LIST_SUMMARY_LOG2 = 24

#: size of each feature histogram, in enum order
FEATURE_SIZES = {
    Feature.SRC: SRC_BUCKETS,
    Feature.DPORT: PORT_BUCKETS,
    Feature.SPORT: PORT_BUCKETS,
    Feature.PROTO: PROTO_BUCKETS,
    Feature.LEN: LEN_CLASSES,
    Feature.FLAGS: FLAG_BUCKETS,
}


def feature_offsets(sizes: dict = FEATURE_SIZES) -> dict:
    """Start slot of each feature in the `features` array."""
    offsets, pos = {}, 0
    for feat in Feature:
        offsets[feat] = pos
        pos += sizes[feat]
    return offsets


FEATURE_SLOTS = sum(FEATURE_SIZES.values())


class SwCounter(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class SwConfig(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class SwLpmV4(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 4)]


class SwLpmV6(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", ctypes.c_uint8 * 16)]


class SwBlock(ctypes.Structure):
    _fields_ = [
        ("expires_ns", ctypes.c_uint64),
        ("last_hit_ns", ctypes.c_uint64),
        ("prefixlen", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
    ]


class SwAllow(ctypes.Structure):
    _fields_ = [("prefixlen", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class SwSource(ctypes.Structure):
    _fields_ = [
        ("packets", ctypes.c_uint64),
        ("bytes", ctypes.c_uint64),
        ("syns", ctypes.c_uint64),
    ]


class SwSig(ctypes.Structure):
    _fields_ = [
        ("proto", ctypes.c_uint8),
        ("match", ctypes.c_uint8),
        ("tcp_flags", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
        ("dport", ctypes.c_uint16),
        ("sport", ctypes.c_uint16),
        ("len_min", ctypes.c_uint16),
        ("len_max", ctypes.c_uint16),
        ("rate_pps", ctypes.c_uint32),
        ("expires_ns", ctypes.c_uint64),
    ]


class SwSigMeta(ctypes.Structure):
    _fields_ = [("used", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class SwListMeta(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


# Default locations; the CLI's --bpffs/--state-dir and the SEAWALL_BPFFS /
# SEAWALL_STATE_DIR environment variables override them.
DEFAULT_BPFFS = "/sys/fs/bpf/seawall"
DEFAULT_STATE_DIR = "/var/lib/seawall"
