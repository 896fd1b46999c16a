"""The kernel/user ABI, the control plane's side: a mirror of xdp/shared.h
and xdp/tunables.h.

The C headers are the one source. Everything here is checked against the
BTF of the compiled object by tests/bpf/test_abi.py: every struct's size,
members and offsets, every enumerator and flag, the tunables, and every
map's type, key, value and size (as Cilium's alignchecker checks its Go
structs). An edit on either side that the other does not follow fails that
test. Nothing here is written twice: numpy dtypes are derived from the
ctypes structs (`dtype`), and the maps' layouts are declared by their owner
modules with these types (datapath/counters.py, tries.py, hosts.py,
summary.py, sigtable.py).
"""

from __future__ import annotations

import ctypes
import enum

import numpy as np


class XdpAction(enum.IntEnum):
    """enum xdp_action (include/uapi/linux/bpf.h): what a program returns."""

    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


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
    TX_SYNCOOKIE = 8
    PASS_SYNCOOKIE = 9
    PASS_SOCKET = 10
    DROP_SYNPROXY = 11
    MON_SYNPROXY = 12


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
    Reason.TX_SYNCOOKIE: "tx",
    Reason.PASS_SYNCOOKIE: "pass",
    Reason.PASS_SOCKET: "pass",
    Reason.DROP_SYNPROXY: "drop",
    Reason.MON_SYNPROXY: "pass",
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


class Feature(enum.IntEnum):
    """enum sw_feature: feature histograms, back to back in one array."""

    SRC = 0
    DPORT = 1
    SPORT = 2
    PROTO = 3
    LEN = 4
    FLAGS = 5
    FRAG = 6  # FragClass of the packet
    DST = 7  # dst_bucket() of the destination address


class FragClass(enum.IntEnum):
    """enum sw_frag_class: a packet as an IP fragment (Feature.FRAG's buckets)."""

    NONE = 0  # not a fragment (an IPv6 atomic fragment included)
    FIRST = 1  # offset 0, more-fragments set: carries the L4 header
    LATER = 2  # offset != 0: no L4 header


class CfgFlag(enum.IntFlag):
    """enum sw_cfg_flags: an interface's config (its config map, slot 0)."""

    MONITOR = 1 << 0


class SynPortFlag(enum.IntFlag):
    """enum sw_synport_flags: struct sw_synport.flags."""

    ACTIVE = 1 << 0
    AUTO = 1 << 1


class BlockFlag(enum.IntFlag):
    """enum sw_block_flags: struct sw_block.flags."""

    AUTO = 1 << 0


class SigMatch(enum.IntFlag):
    """enum sw_sig_match: which fields of struct sw_sig are compared."""

    ACTIVE = 1 << 0
    DPORT = 1 << 1
    SPORT = 1 << 2
    LEN = 1 << 3
    FLAGS = 1 << 4
    FRAG = 1 << 5  # only non-first fragments; never beside DPORT, SPORT or FLAGS


class ListsFlag(enum.IntFlag):
    """enum sw_lists_flags: the host-wide list flags (list_meta, slot 0)."""

    SUMMARISED = 1 << 0


#: each enum's C name, the prefix of its enumerators there, and the C
#: enumerator that counts it (a mirror has no member for that one)
C_ENUMS = {
    XdpAction: ("xdp_action", "XDP_", None),
    Reason: ("sw_reason", "SW_", "SW_REASON_MAX"),
    Event: ("sw_event", "SW_EV_", "SW_EVENT_MAX"),
    Feature: ("sw_feature", "SW_FEAT_", "SW_FEATURE_MAX"),
    CfgFlag: ("sw_cfg_flags", "SW_CFG_", None),
    BlockFlag: ("sw_block_flags", "SW_BLOCK_", None),
    SynPortFlag: ("sw_synport_flags", "SW_SYNPORT_", None),
    SigMatch: ("sw_sig_match", "SW_SIG_", None),
    FragClass: ("sw_frag_class", "SW_FRAG_", None),
    ListsFlag: ("sw_lists_flags", "SW_LISTS_", None),
}

REASON_MAX = len(Reason)
EVENT_MAX = len(Event)

# --- tunables.h: the defaults the program is compiled with ------------------
# The control plane passes none of these to the compiler (but SW_NR_CPUS):
# it reads what it needs of them here, and the maps' own sizes at run time.

VLAN_MAX_DEPTH = 2
IPV6_EXT_MAX_CHAIN = 8
MAX_ALLOW_ENTRIES = 16384
MAX_BLOCK_ENTRIES = 131072
LIST_SUMMARY_LOG2 = 24  # bits per list summary, as a log
BLOCK_EXPIRED_HOPS = 4
MAX_SOURCES_V4 = 65536
MAX_SOURCES_V6 = 16384
HOT_SOURCES_V4 = 256  # at the default table sizes; 32768 and 8192 past 131,072 sources in all
HOT_SOURCES_V6 = 64
ADMIT_SLOTS = 65536
ADMIT_RATE = 4096  # LRU inserts per second per CPU
ADMIT_BURST = 1024
MAX_SIGNATURES = 16
SRC_BUCKETS = 4096
PORT_BUCKETS = 65536
PROTO_BUCKETS = 256
LEN_CLASSES = 16
FLAG_BUCKETS = 64
FRAG_BUCKETS = 4  # FragClass, one spare
DST_BUCKETS = 256  # dst_bucket(): must stay 256 (a bijection on the last octet)
LEN_CLASS_WIDTH = 128  # bytes
LAST_HIT_GRANULARITY_NS = 1_000_000_000

#: the tunables above, by their C name
TUNABLES = ("VLAN_MAX_DEPTH", "IPV6_EXT_MAX_CHAIN", "MAX_ALLOW_ENTRIES", "MAX_BLOCK_ENTRIES",
            "LIST_SUMMARY_LOG2", "BLOCK_EXPIRED_HOPS", "MAX_SOURCES_V4", "MAX_SOURCES_V6", "HOT_SOURCES_V4",
            "HOT_SOURCES_V6", "ADMIT_SLOTS",
            "ADMIT_RATE", "ADMIT_BURST", "MAX_SIGNATURES", "SRC_BUCKETS", "PORT_BUCKETS", "PROTO_BUCKETS",
            "LEN_CLASSES", "FLAG_BUCKETS", "FRAG_BUCKETS", "DST_BUCKETS", "LEN_CLASS_WIDTH",
            "LAST_HIT_GRANULARITY_NS")

#: size of each feature histogram, in enum order (maps.h: FEAT_OFF_*)
FEATURE_SIZES = {
    Feature.SRC: SRC_BUCKETS,
    Feature.DPORT: PORT_BUCKETS,
    Feature.SPORT: PORT_BUCKETS,
    Feature.PROTO: PROTO_BUCKETS,
    Feature.LEN: LEN_CLASSES,
    Feature.FLAGS: FLAG_BUCKETS,
    Feature.FRAG: FRAG_BUCKETS,
    Feature.DST: DST_BUCKETS,
}
FEATURE_SLOTS = sum(FEATURE_SIZES.values())


def feature_offsets(sizes: dict = FEATURE_SIZES) -> dict:
    """Start slot of each feature in the `features` array."""
    offsets, pos = {}, 0
    for feat in Feature:
        offsets[feat] = pos
        pos += sizes[feat]
    return offsets


def split_features(flat: np.ndarray) -> dict:
    """The flat features array as {Feature: histogram}."""
    off = feature_offsets()
    return {f: flat[off[f]: off[f] + FEATURE_SIZES[f]] for f in Feature}


_M32 = 0xFFFFFFFF


def dst_bucket(addr: bytes) -> int:
    """The Feature.DST bucket of a destination address (4 or 16 bytes,
    network order): dst_bucket_v4/v6() in xdp/seawall.c. Its last octet
    XORed with the top 8 bits of a multiplicative hash of the rest, so the
    addresses that differ only in the last octet (a host's addresses in one
    IPv4 /24 or IPv6 /120) never share a bucket."""
    a = bytes(addr)
    if len(a) not in (4, 16):
        raise ValueError(f"an address is 4 or 16 bytes, not {len(a)}")
    last = int.from_bytes(a[-4:], "big")
    if len(a) == 4:
        h = last >> 8
    else:
        w = [int.from_bytes(a[i:i + 4], "big") for i in (0, 4, 8)]
        h = ((w[0] * 0x85EBCA77) ^ (w[1] * 0xC2B2AE3D) ^ (w[2] * 0x27D4EB2F) ^ (last >> 8)) & _M32
    return (last ^ (((h * 0x9E3779B1) & _M32) >> 24)) & (DST_BUCKETS - 1)


def dst_buckets(addrs: np.ndarray) -> np.ndarray:
    """dst_bucket() over an (n, 4) or (n, 16) uint8 array of addresses
    (network order): (n,) int64 buckets."""
    a = np.ascontiguousarray(addrs, dtype=np.uint8)
    if a.ndim != 2 or a.shape[1] not in (4, 16):
        raise ValueError(f"addresses must be an (n, 4) or (n, 16) array, not {a.shape}")
    w = a.view(">u4").astype(np.uint32)  # (n, 1) or (n, 4) words in host order
    last = w[:, -1]
    if a.shape[1] == 4:
        h = last >> np.uint32(8)
    else:
        h = ((w[:, 0] * np.uint32(0x85EBCA77)) ^ (w[:, 1] * np.uint32(0xC2B2AE3D))
             ^ (w[:, 2] * np.uint32(0x27D4EB2F)) ^ (last >> np.uint32(8)))
    return ((last ^ ((h * np.uint32(0x9E3779B1)) >> np.uint32(24))) & np.uint32(DST_BUCKETS - 1)).astype(np.int64)


def live(expires_ns, now_ns):
    """The datapath's expiry rule for blocks and signature rules: 0 never
    expires, anything else is in force while it is later than now
    (CLOCK_BOOTTIME ns). Takes ints or numpy arrays."""
    return (expires_ns == 0) | (expires_ns > now_ns)


# --- structs (shared.h), in native byte order as the kernel lays them out ------

class SwCounter(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class SwConfig(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint16), ("hot_pkts", ctypes.c_uint16), ("epoch", ctypes.c_uint32)]


class SwLpmV4(ctypes.Structure):
    """An LPM trie key: u32 prefix length, then the address (network order)."""

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
        ("epoch", ctypes.c_uint32),
        ("epoch_pkts", ctypes.c_uint16),
        ("was_hot", ctypes.c_uint16),
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


class SwSynPort(ctypes.Structure):
    """A port under SYN protection: slot `port` of syn_ports."""

    _fields_ = [
        ("expires_ns", ctypes.c_uint64),
        ("flags", ctypes.c_uint8),
        ("wscale", ctypes.c_uint8),
        ("mss4", ctypes.c_uint16),
        ("mss6", ctypes.c_uint16),
        ("pad", ctypes.c_uint16),
    ]


class SwListMeta(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class SwAdmitBucket(ctypes.Structure):
    """Kernel-only scratch: a token bucket."""

    _fields_ = [("tokens", ctypes.c_uint64), ("last_ns", ctypes.c_uint64)]


class SwSynArgs(ctypes.Structure):
    """Kernel-only scratch: a segment to a protected port, handed to SYN protection."""

    _fields_ = [
        ("l3_off", ctypes.c_uint64),
        ("l4_off", ctypes.c_uint64),
        ("len", ctypes.c_uint64),
        ("dport", ctypes.c_uint32),
        ("v6", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("frag", ctypes.c_uint32),
    ]


class SwStamp(ctypes.Structure):
    """Kernel-only scratch: a CPU's jiffy and boot-clock reading."""

    _fields_ = [("jiffies", ctypes.c_uint64), ("ns", ctypes.c_uint64)]


#: every mirrored struct, by its C name
STRUCTS = {"sw_counter": SwCounter, "sw_config": SwConfig, "sw_lpm_v4": SwLpmV4, "sw_lpm_v6": SwLpmV6,
           "sw_block": SwBlock, "sw_allow": SwAllow, "sw_source": SwSource, "sw_sig": SwSig,
           "sw_sig_meta": SwSigMeta, "sw_synport": SwSynPort, "sw_list_meta": SwListMeta, "sw_admit_bucket": SwAdmitBucket, "sw_syn_args": SwSynArgs,
           "sw_stamp": SwStamp}

# scalar map keys and values, and raw addresses
U32 = ctypes.c_uint32
U64 = ctypes.c_uint64
IN_ADDR = ctypes.c_uint8 * 4  # an IPv4 address as the kernel keys it (__u32, network order)
IN6_ADDR = ctypes.c_uint8 * 16  # struct in6_addr


def dtype(ctype) -> np.dtype:
    """The numpy dtype of a ctypes struct or scalar: one row per entry."""
    return np.dtype(ctype)
