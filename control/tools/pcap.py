"""Reading pcap and pcapng captures (Ethernet only). Pure.

A file that is neither, a truncated record, or a link type other than
Ethernet raises CaptureError with one line saying what and where.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

from seawall.control.errors import SeawallError

LINKTYPE_ETHERNET = 1


class CaptureError(SeawallError):
    pass


@dataclass(frozen=True)
class Frame:
    ts: float  # seconds since the epoch, capture clock
    data: bytes  # the captured bytes (may be shorter than on the wire)
    wire_len: int


def read(path: str) -> Iterator[Frame]:
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


def _pcap(path, f):
    hdr = f.read(24)
    if len(hdr) < 24:
        raise CaptureError(f"{path}: truncated pcap header")
    magic = hdr[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    snaplen, linktype = struct.unpack(endian + "II", hdr[16:24])
    if linktype & 0xFFFF != LINKTYPE_ETHERNET:
        raise CaptureError(f"{path}: link type {linktype} is not Ethernet")
    div = 1e9 if nano else 1e6
    n = 0
    while True:
        rec = f.read(16)
        if not rec:
            return
        if len(rec) < 16:
            raise CaptureError(f"{path}: truncated record header after packet {n}")
        sec, frac, incl, orig = struct.unpack(endian + "IIII", rec)
        if incl > max(snaplen, 262144):
            raise CaptureError(f"{path}: packet {n + 1} claims {incl} bytes (corrupt record)")
        data = f.read(incl)
        if len(data) < incl:
            raise CaptureError(f"{path}: truncated inside packet {n + 1}")
        n += 1
        yield Frame(sec + frac / div, data, orig)


# shortest body (without the trailing length) of the blocks we parse:
# IDB link type, reserved, snaplen; EPB interface, timestamp, lengths; SPB length
_MIN_BODY = {1: 8, 6: 20, 3: 4}


def _pcapng(path, f):
    endian = "<"
    ifaces = []  # (linktype, ts divisor, snaplen) of the current section
    n = 0
    while True:
        hdr = f.read(8)
        if not hdr:
            return
        if len(hdr) < 8:
            raise CaptureError(f"{path}: truncated block header after packet {n}")
        btype = struct.unpack(endian + "I", hdr[:4])[0]
        if btype == 0x0A0D0D0A:
            bom = f.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise CaptureError(f"{path}: bad pcapng byte-order magic")
            ifaces = []  # interface numbers start again in each section
            head = bom
        else:
            head = b""
        blen = struct.unpack(endian + "I", hdr[4:8])[0]
        if blen < 12 or blen % 4 or blen > 1 << 24:
            raise CaptureError(f"{path}: corrupt block length {blen} after packet {n}")
        body = head + f.read(blen - 8 - len(head))
        if len(body) < blen - 8:
            raise CaptureError(f"{path}: truncated block after packet {n}")
        body = body[:-4]  # trailing length
        if len(body) < _MIN_BODY.get(btype, 0):
            raise CaptureError(f"{path}: block of type {btype} too short ({blen} bytes) after packet {n}")
        if btype == 1:  # interface description
            linktype, _, snaplen = struct.unpack(endian + "HHI", body[:8])
            div = 1e6
            opts = body[8:]
            while len(opts) >= 4:
                code, olen = struct.unpack(endian + "HH", opts[:4])
                if code == 0:
                    break
                if 4 + olen > len(opts):
                    raise CaptureError(f"{path}: corrupt interface option {code} after packet {n}")
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
                raise CaptureError(f"{path}: packet {n + 1} names interface {iface} that was never described")
            linktype, div, snaplen = ifaces[iface]
            if linktype != LINKTYPE_ETHERNET:
                raise CaptureError(f"{path}: link type {linktype} is not Ethernet")
            if btype == 6:
                data = body[20:20 + incl]
            else:  # the frame is min(original, snaplen) bytes; the rest is padding
                incl = min(orig, snaplen) if snaplen else orig
                data = body[4:4 + incl]
            if len(data) < incl:
                raise CaptureError(f"{path}: truncated inside packet {n + 1}")
            n += 1
            yield Frame(((th << 32) | tl) / div, bytes(data), orig)
