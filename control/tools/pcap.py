"""Reading pcap and pcapng captures, one frame at a time. Pure.

Link types read: Ethernet (1); Linux cooked captures, as `tcpdump -i any`
writes them, SLL (113) and SLL2 (276); raw IP (101, and 12 and 14, the
DLT_RAW values of Linux and OpenBSD written into old files); raw IPv4
(228) and raw IPv6 (229). Every frame comes out as an Ethernet frame, as
the XDP program would see it on a NIC: a cooked or raw link header is
replaced by a 14-byte Ethernet header carrying the packet's EtherType
(zero MACs but the cooked header's source MAC), and its wire length
changes by the same number of bytes.

A file that is none of these, a truncated record, a corrupt length or a
link type not listed raises CaptureError with one line saying what and
where (packet number and byte offset).
"""

from __future__ import annotations

import os
import struct
from typing import Callable, Iterator, NamedTuple, Optional

from seawall.control.errors import SeawallError

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
DLT_RAW = (12, 14)  # raw IP in files written with the platform's DLT value (12; 14 on OpenBSD)

MAX_RECORD = 262144  # bytes: libpcap's largest snap length; a longer record is corrupt
PACKET_OUTGOING = 4  # a cooked header's packet type: sent by the capturing host
_ARPHRD_ETHER = 1
_NOT_ETHERTYPE = {824, 803}  # ARPHRD_NETLINK, ARPHRD_IEEE80211_RADIOTAP: protocol is no EtherType

_ZERO_MAC = bytes(6)
_ETH_IPV4 = _ZERO_MAC * 2 + b"\x08\x00"
_ETH_IPV6 = _ZERO_MAC * 2 + b"\x86\xdd"
_ETH_NOT_IP = _ZERO_MAC * 2 + b"\x00\x00"  # EtherType 0: the program passes it as not IP


class CaptureError(SeawallError):
    pass


class Frame(NamedTuple):
    ts: float  # seconds since the epoch, capture clock
    data: bytes  # the captured bytes as an Ethernet frame (may be shorter than on the wire)
    wire_len: int  # the frame's length on the wire, with an Ethernet header
    outgoing: bool = False  # a cooked capture's packet the capturing host sent (no XDP sees it)


class Summary(NamedTuple):
    packets: int  # frames the host received (outgoing ones excluded)
    outgoing: int  # frames a cooked capture marks as sent by the capturing host
    first_ts: float  # of the first received frame in file order
    min_ts: float
    max_ts: float


def read(path: str) -> Iterator[Frame]:
    """The capture's frames in file order, read as they are needed: memory
    does not grow with the capture."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CaptureError(f"{path}: {e.strerror}") from None
    with f:
        head = f.read(4)
        if len(head) < 4:
            raise CaptureError(f"{path}: empty or too short to be a capture")
        f.seek(0)
        if head == b"\x0a\x0d\x0d\x0a":
            yield from _pcapng(path, f)
        elif head in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
            yield from _pcap(path, f)
        else:
            raise CaptureError(f"{path}: not a pcap or pcapng capture (magic {head.hex()})")


def scan(path: str, tick: Optional[Callable[[int], None]] = None, every: int = 65536) -> Summary:
    """One streaming pass over the whole capture: counts and timestamps, and
    every error the replay would meet, before anything is compiled.
    tick(frames read so far) is called every `every` frames."""
    n = out = 0
    first = lo = hi = None
    for i, fr in enumerate(read(path), 1):
        if tick is not None and i % every == 0:
            tick(i)
        if fr.outgoing:
            out += 1
            continue
        n += 1
        if first is None:
            first = lo = hi = fr.ts
        elif fr.ts < lo:
            lo = fr.ts
        elif fr.ts > hi:
            hi = fr.ts
    if first is None:
        return Summary(0, out, 0.0, 0.0, 0.0)
    return Summary(n, out, first, lo, hi)


# --- link layers: each turns a captured frame into (Ethernet frame, outgoing) ---

def _ethernet(data: bytes):
    return data, False


def _raw(data: bytes):
    v = data[0] >> 4 if data else 0
    return (_ETH_IPV4 if v == 4 else _ETH_IPV6 if v == 6 else _ETH_NOT_IP) + data, False


def _ipv4(data: bytes):
    return _ETH_IPV4 + data, False


def _ipv6(data: bytes):
    return _ETH_IPV6 + data, False


def _cooked(proto: bytes, arphrd: int, pkttype: int, addrlen: int, addr: bytes, payload: bytes):
    if arphrd in _NOT_ETHERTYPE:
        proto = b"\x00\x00"
    src = addr[:6] if arphrd == _ARPHRD_ETHER and addrlen == 6 else _ZERO_MAC
    return _ZERO_MAC + src + proto + payload, pkttype == PACKET_OUTGOING


def _sll(data: bytes):
    """LINUX_SLL: packet type, ARPHRD type, address length, 8 bytes of
    address, protocol (all network order), then the payload."""
    pkttype, arphrd, addrlen = struct.unpack_from("!HHH", data)
    return _cooked(data[14:16], arphrd, pkttype, addrlen, data[6:14], data[16:])


def _sll2(data: bytes):
    """LINUX_SLL2: protocol, reserved, interface index, ARPHRD type, packet
    type, address length, 8 bytes of address, then the payload."""
    arphrd, pkttype, addrlen = struct.unpack_from("!HBB", data, 8)
    return _cooked(data[0:2], arphrd, pkttype, addrlen, data[12:20], data[20:])


# link type: (name, bytes of its header, converter)
LINKS = {
    LINKTYPE_ETHERNET: ("Ethernet", 14, _ethernet),
    LINKTYPE_LINUX_SLL: ("Linux cooked SLL", 16, _sll),
    LINKTYPE_LINUX_SLL2: ("Linux cooked SLL2", 20, _sll2),
    LINKTYPE_RAW: ("raw IP", 0, _raw),
    DLT_RAW[0]: ("raw IP", 0, _raw),
    DLT_RAW[1]: ("raw IP", 0, _raw),
    LINKTYPE_IPV4: ("raw IPv4", 0, _ipv4),
    LINKTYPE_IPV6: ("raw IPv6", 0, _ipv6),
}
_READ = "Ethernet 1, Linux cooked SLL 113 and SLL2 276, raw IP 101, 12, 14, raw IPv4 228, raw IPv6 229"


def _link(path: str, linktype: int, where: str):
    """(converter, header length) of a link type, or CaptureError naming it."""
    try:
        _, hlen, conv = LINKS[linktype]
    except KeyError:
        raise CaptureError(f"{path}: {where}link type {linktype} is not one replay reads "
                           f"({_READ})") from None
    return conv, hlen


def _frame(path, conv, hlen, ts, data, orig, n, off):
    """Frame `n` (1-based, its record at byte `off`) as Ethernet."""
    if conv is _ethernet:
        return Frame(ts, data, orig)
    if len(data) < hlen:
        raise CaptureError(f"{path}: packet {n} at byte {off} holds {len(data)} bytes, "
                           f"shorter than its {hlen}-byte link header (corrupt record)")
    eth, outgoing = conv(data)
    return Frame(ts, eth, max(orig + len(eth) - len(data), len(eth)), outgoing)


def _pcap(path, f):
    hdr = f.read(24)
    if len(hdr) < 24:
        raise CaptureError(f"{path}: truncated pcap header")
    magic = hdr[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    snaplen, linktype = struct.unpack(endian + "II", hdr[16:24])
    conv, hlen = _link(path, linktype & 0xFFFF, "")  # the upper bits say whether frames carry an FCS
    div = 1e9 if nano else 1e6
    record = struct.Struct(endian + "IIII")
    n = 0
    off = 24
    while True:
        rec = f.read(16)
        if not rec:
            return
        if len(rec) < 16:
            raise CaptureError(f"{path}: truncated record header after packet {n} (byte {off} of "
                               f"{_size(f)})")
        sec, frac, incl, orig = record.unpack(rec)
        if incl > max(snaplen, MAX_RECORD):
            raise CaptureError(f"{path}: packet {n + 1} claims {incl} bytes (corrupt record), at byte {off}")
        data = f.read(incl)
        if len(data) < incl:
            raise CaptureError(f"{path}: truncated inside packet {n + 1} (record at byte {off}, "
                               f"{incl} bytes claimed, file ends at {_size(f)})")
        n += 1
        yield _frame(path, conv, hlen, sec + frac / div, data, orig, n, off)
        off += 16 + incl


def _size(f) -> int:
    return os.fstat(f.fileno()).st_size


# shortest body (without the trailing length) of the blocks we parse:
# IDB link type, reserved, snaplen; EPB interface, timestamp, lengths; SPB length
_MIN_BODY = {1: 8, 6: 20, 3: 4}


def _pcapng(path, f):
    endian = "<"
    ifaces = []  # (linktype, ts divisor, snaplen) of the current section
    n = 0
    off = 0  # of the block being read
    while True:
        hdr = f.read(8)
        if not hdr:
            return
        if len(hdr) < 8:
            raise CaptureError(f"{path}: truncated block header after packet {n} (byte {off})")
        btype = struct.unpack(endian + "I", hdr[:4])[0]
        if btype == 0x0A0D0D0A:
            bom = f.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise CaptureError(f"{path}: bad pcapng byte-order magic (section at byte {off})")
            ifaces = []  # interface numbers start again in each section
            head = bom
        else:
            head = b""
        blen = struct.unpack(endian + "I", hdr[4:8])[0]
        if blen < 12 or blen % 4 or blen > 1 << 24:
            raise CaptureError(f"{path}: corrupt block length {blen} after packet {n} (block at byte {off})")
        body = head + f.read(blen - 8 - len(head))
        if len(body) < blen - 8:
            raise CaptureError(f"{path}: truncated block after packet {n} (block at byte {off}, "
                               f"{blen} bytes claimed, file ends at {_size(f)})")
        body = body[:-4]  # trailing length
        if len(body) < _MIN_BODY.get(btype, 0):
            raise CaptureError(f"{path}: block of type {btype} too short ({blen} bytes) after packet {n} "
                               f"(byte {off})")
        if btype == 1:  # interface description
            linktype, _, snaplen = struct.unpack(endian + "HHI", body[:8])
            div = 1e6
            opts = body[8:]
            while len(opts) >= 4:
                code, olen = struct.unpack(endian + "HH", opts[:4])
                if code == 0:
                    break
                if 4 + olen > len(opts):
                    raise CaptureError(f"{path}: corrupt interface option {code} after packet {n} (byte {off})")
                if code == 9 and olen >= 1:  # if_tsresol
                    r = opts[4]
                    div = float(2 ** (r & 0x7F)) if r & 0x80 else float(10 ** r)
                opts = opts[4 + ((olen + 3) & ~3):]
            ifaces.append((linktype, div, snaplen))
        elif btype in (6, 3):  # enhanced / simple packet
            if btype == 6:
                iface, th, tl, incl, orig = struct.unpack(endian + "IIIII", body[:20])
            else:
                iface, th, tl, orig = 0, 0, 0, struct.unpack(endian + "I", body[:4])[0]
            if iface >= len(ifaces):
                raise CaptureError(f"{path}: packet {n + 1} names interface {iface} that was never described "
                                   f"(byte {off})")
            linktype, div, snaplen = ifaces[iface]
            conv, hlen = _link(path, linktype, f"packet {n + 1}: interface {iface}'s ")
            if btype == 6:
                data = body[20:20 + incl]
            else:  # the frame is min(original, snaplen) bytes; the rest is padding
                incl = min(orig, snaplen) if snaplen else orig
                data = body[4:4 + incl]
            if len(data) < incl:
                raise CaptureError(f"{path}: truncated inside packet {n + 1} (block at byte {off})")
            n += 1
            yield _frame(path, conv, hlen, ((th << 32) | tl) / div, bytes(data), orig, n, off)
        off += blen
