"""control/pcap.py: reading pcap and pcapng captures. Files are built here
with struct, byte for byte as the formats lay them out, in both byte orders;
every bad file is one CaptureError line naming the file and the problem."""

from __future__ import annotations

import math
import os
import struct
from fractions import Fraction

import pytest

from seawall.control.tools import pcap
from seawall.control.errors import SeawallError
from seawall.control.tools.pcap import CaptureError

CAPTURES = "/work/shared/captures"
ETH = 1

# two Ethernet frames: a minimum-size TCP SYN and an odd-length UDP datagram
SYN = bytes.fromhex("ffffffffffff0200000000010800") + bytes(range(46))
UDP = bytes.fromhex("0200000000020200000000010800") + bytes(range(47))
assert len(SYN) == 60 and len(UDP) == 61


# --- builders ---------------------------------------------------------------------

def pcap_file(records, endian="<", nano=False, linktype=ETH, snaplen=65535, magic=None) -> bytes:
    """records: (sec, frac, data[, wire_len])"""
    if magic is None:
        magic = struct.pack(endian + "I", 0xA1B23C4D if nano else 0xA1B2C3D4)
    out = magic + struct.pack(endian + "HHiIII", 2, 4, 0, 0, snaplen, linktype)
    for r in records:
        sec, frac, data = r[:3]
        wire = r[3] if len(r) > 3 else len(data)
        out += struct.pack(endian + "IIII", sec, frac, len(data), wire) + data
    return out


def pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def block(btype: int, body: bytes, endian="<") -> bytes:
    body = pad4(body)
    n = 12 + len(body)
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def shb(endian="<") -> bytes:
    return block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def idb(endian="<", linktype=ETH, tsresol=None, snaplen=0, extra_options=b"") -> bytes:
    body = struct.pack(endian + "HHI", linktype, 0, snaplen)
    opts = extra_options
    if tsresol is not None:
        opts += struct.pack(endian + "HH", 9, 1) + pad4(bytes([tsresol]))
    if opts:
        opts += struct.pack(endian + "HH", 0, 0)
    return block(1, body + opts, endian)


def epb(ticks: int, data: bytes, iface=0, endian="<", wire=None) -> bytes:
    body = struct.pack(endian + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                       len(data) if wire is None else wire)
    return block(6, body + pad4(data), endian)


def spb(data: bytes, endian="<", wire=None) -> bytes:
    return block(3, struct.pack(endian + "I", len(data) if wire is None else wire) + pad4(data), endian)


def comment_option(endian, text: bytes) -> bytes:
    return struct.pack(endian + "HH", 1, len(text)) + pad4(text)


def write(tmp_path, data: bytes, name="c.pcap"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def read(tmp_path, data: bytes, name="c.pcap") -> list:
    return list(pcap.read(write(tmp_path, data, name)))


def assert_ts(ts: float, exact: Fraction):
    """As exact as a double allows: within one unit in the last place."""
    assert abs(Fraction(ts) - exact) <= Fraction(math.ulp(ts)), (ts, float(exact))


def error(tmp_path, data: bytes, name="c.pcap") -> str:
    path = write(tmp_path, data, name)
    with pytest.raises(CaptureError) as e:
        list(pcap.read(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    return msg


# --- pcap ------------------------------------------------------------------------

@pytest.mark.parametrize("endian", ["<", ">"], ids=["little", "big"])
@pytest.mark.parametrize("nano", [False, True], ids=["micro", "nano"])
def test_pcap_frames_and_timestamps(tmp_path, endian, nano):
    div = 10**9 if nano else 10**6
    recs = [
        (1619605821, 99510, SYN),
        (1619605821, div - 1, UDP),  # the last tick of a second
        (1619605844, 0, SYN[:54], 1514),  # cut at the snap length: wire length kept
        (2, div // 4, UDP),  # small enough to be exact to the tick
    ]
    frames = read(tmp_path, pcap_file(recs, endian, nano))
    assert len(frames) == 4
    for f, r in zip(frames, recs):
        assert f.data == r[2] and isinstance(f.data, bytes)
        assert f.wire_len == (r[3] if len(r) > 3 else len(r[2]))
        assert_ts(f.ts, r[0] + Fraction(r[1], div))
    assert frames[3].ts == 2.25


def test_pcap_magic_bytes_on_disk():
    """The four magics as they appear in files (not as integers)."""
    assert pcap_file([], "<")[:4] == bytes.fromhex("d4c3b2a1")
    assert pcap_file([], ">")[:4] == bytes.fromhex("a1b2c3d4")
    assert pcap_file([], "<", nano=True)[:4] == bytes.fromhex("4d3cb2a1")
    assert pcap_file([], ">", nano=True)[:4] == bytes.fromhex("a1b23c4d")


def test_pcap_nano_is_not_read_as_micro(tmp_path):
    f = read(tmp_path, pcap_file([(10, 500_000_000, SYN)], nano=True))[0]
    assert f.ts == 10.5  # as microseconds it would be 510 s


def test_pcap_without_packets(tmp_path):
    assert read(tmp_path, pcap_file([])) == []


def test_pcap_empty_record(tmp_path):
    frames = read(tmp_path, pcap_file([(1, 0, b""), (2, 0, SYN)]))
    assert [f.data for f in frames] == [b"", SYN]


def test_pcap_record_up_to_the_snap_length(tmp_path):
    big = bytes(262144)
    assert read(tmp_path, pcap_file([(1, 0, big)], snaplen=262144))[0].data == big


def test_pcap_fcs_bits_in_the_link_type_are_ignored(tmp_path):
    """The upper bits of the link type field say whether frames carry an FCS."""
    assert len(read(tmp_path, pcap_file([(1, 0, SYN)], linktype=0x10000000 | ETH))) == 1


def test_read_is_lazy(tmp_path):
    """Frames come one at a time: a bad record late in the file does not
    hide the good ones before it."""
    good = pcap_file([(1, 0, SYN), (2, 0, UDP)])
    it = pcap.read(write(tmp_path, good + struct.pack("<IIII", 3, 0, 100, 100) + bytes(10)))
    assert next(it).data == SYN and next(it).data == UDP
    with pytest.raises(CaptureError, match="truncated inside packet 3"):
        next(it)


# --- pcapng -----------------------------------------------------------------------

@pytest.mark.parametrize("endian", ["<", ">"], ids=["little", "big"])
def test_pcapng_default_resolution_is_microseconds(tmp_path, endian):
    ticks = [1619605821_099510, 1619605821_999999, 2_250000]
    data = shb(endian) + idb(endian) + b"".join(epb(t, d, endian=endian) for t, d in zip(ticks, [SYN, UDP, SYN]))
    frames = read(tmp_path, data, "c.pcapng")
    assert [f.data for f in frames] == [SYN, UDP, SYN]
    assert [f.wire_len for f in frames] == [60, 61, 60]
    for f, t in zip(frames, ticks):
        assert f.ts == float(Fraction(t, 10**6))  # one division: correctly rounded
    assert frames[2].ts == 2.25


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little", "big"])
@pytest.mark.parametrize("tsresol, per_second", [
    (6, 10**6), (9, 10**9), (3, 10**3), (0, 1), (0x80 | 20, 2**20), (0x80 | 10, 2**10),
])
def test_pcapng_if_tsresol(tmp_path, endian, tsresol, per_second):
    ticks = [1619605821 * per_second + per_second // 3, 2 * per_second + per_second // 4, per_second - 1]
    data = shb(endian) + idb(endian, tsresol=tsresol) + b"".join(epb(t, SYN, endian=endian) for t in ticks)
    frames = read(tmp_path, data, "c.pcapng")
    assert len(frames) == 3
    for f, t in zip(frames, ticks):
        assert_ts(f.ts, Fraction(t, per_second))


def test_pcapng_tsresol_after_another_option(tmp_path):
    opts = comment_option("<", b"captured on the edge")  # 20 bytes, a multiple of 4
    opts_odd = comment_option("<", b"odd")  # 3 bytes + 1 of padding
    for extra in (opts, opts_odd):
        data = shb() + idb(tsresol=9, extra_options=extra) + epb(3_500_000_000, SYN)
        assert read(tmp_path, data, "c.pcapng")[0].ts == 3.5


def test_pcapng_interfaces_keep_their_own_resolution(tmp_path):
    data = (shb() + idb(tsresol=6) + idb(tsresol=9)
            + epb(1_500_000, SYN, iface=0) + epb(1_500_000_000, UDP, iface=1))
    frames = read(tmp_path, data, "c.pcapng")
    assert [(f.ts, f.data) for f in frames] == [(1.5, SYN), (1.5, UDP)]


def test_pcapng_snapped_packet(tmp_path):
    f = read(tmp_path, shb() + idb(snaplen=54) + epb(1, SYN[:54], wire=1514), "c.pcapng")[0]
    assert (f.data, f.wire_len) == (SYN[:54], 1514)


def test_pcapng_skips_blocks_it_does_not_need(tmp_path):
    nrb = block(4, struct.pack("<HH", 0, 0))  # name resolution, empty
    stats = block(5, struct.pack("<III", 0, 0, 0))  # interface statistics
    custom = block(0x00000BAD, b"vendor data")
    data = shb() + nrb + idb() + custom + epb(1_000_000, SYN) + stats + epb(2_000_000, UDP)
    frames = read(tmp_path, data, "c.pcapng")
    assert [(f.ts, f.data) for f in frames] == [(1.0, SYN), (2.0, UDP)]


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little", "big"])
def test_pcapng_simple_packet_block(tmp_path, endian):
    """No timestamp; the frame is the original length, not the padding."""
    frames = read(tmp_path, shb(endian) + idb(endian) + spb(UDP, endian) + spb(SYN, endian), "c.pcapng")
    assert [f.data for f in frames] == [UDP, SYN]
    assert [f.wire_len for f in frames] == [61, 60]


def test_pcapng_simple_packet_block_cut_at_the_snap_length(tmp_path):
    f = read(tmp_path, shb() + idb(snaplen=54) + spb(SYN[:54], wire=1514), "c.pcapng")[0]
    assert (f.data, f.wire_len) == (SYN[:54], 1514)


def test_pcapng_sections_of_both_byte_orders(tmp_path):
    """A new section starts its own interface list, possibly in the other order."""
    data = (shb("<") + idb("<", tsresol=6) + epb(1_500_000, SYN, endian="<")
            + shb(">") + idb(">", tsresol=9) + epb(2_500_000_000, UDP, endian=">"))
    frames = read(tmp_path, data, "c.pcapng")
    assert [(f.ts, f.data) for f in frames] == [(1.5, SYN), (2.5, UDP)]


def test_pcapng_a_new_section_forgets_the_old_interfaces(tmp_path):
    data = shb() + idb() + epb(1, SYN) + shb() + epb(2, SYN)
    assert "names interface 0 that was never described" in error(tmp_path, data, "c.pcapng")


def test_pcapng_without_packets(tmp_path):
    assert read(tmp_path, shb() + idb(), "c.pcapng") == []


# --- errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("data, fragment", [
    (b"hello, this is not a capture at all", "not a pcap or pcapng capture (magic 68656c6c)"),
    (bytes(64), "not a pcap or pcapng capture (magic 00000000)"),
    (b"\x89PNG\r\n\x1a\n" + bytes(30), "not a pcap or pcapng capture"),
    (b"", "empty or too short to be a capture"),
    (b"\xd4\xc3\xb2", "empty or too short to be a capture"),
])
def test_not_a_capture(tmp_path, data, fragment):
    assert fragment in error(tmp_path, data)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("cut", [4, 10, 23])
def test_pcap_truncated_header(tmp_path, endian, cut):
    assert "truncated pcap header" in error(tmp_path, pcap_file([], endian)[:cut])


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcap_truncated_record_header(tmp_path, endian):
    assert "truncated record header after packet 0" in error(tmp_path, pcap_file([], endian) + bytes(10))
    two = pcap_file([(1, 0, SYN), (2, 0, UDP)], endian)
    assert "truncated record header after packet 2" in error(tmp_path, two + bytes(15))


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcap_truncated_record(tmp_path, endian):
    one = pcap_file([(1, 0, SYN)], endian)
    assert "truncated inside packet 1" in error(tmp_path, one[:-1])
    assert "truncated inside packet 1" in error(tmp_path, one[:-59])
    two = pcap_file([(1, 0, SYN), (2, 0, UDP)], endian)
    assert "truncated inside packet 2" in error(tmp_path, two[:-30])


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("incl", [0x7FFFFFFF, 0xFFFFFFFF, 262145])
def test_pcap_absurd_record_length(tmp_path, endian, incl):
    bad = pcap_file([(1, 0, SYN)], endian) + struct.pack(endian + "IIII", 2, 0, incl, incl) + bytes(100)
    assert f"packet 2 claims {incl} bytes (corrupt record)" in error(tmp_path, bad)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("linktype", [0, 105, 127, 147, 0xFFFF])
def test_pcap_unknown_link_type(tmp_path, endian, linktype):
    """Named in one line with the link types that are read."""
    msg = error(tmp_path, pcap_file([(1, 0, SYN)], endian, linktype=linktype))
    assert f"link type {linktype} is not one replay reads (Ethernet 1, Linux cooked SLL 113" in msg


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_unknown_link_type(tmp_path, endian):
    data = shb(endian) + idb(endian) + idb(endian, linktype=147) + epb(1, SYN, endian=endian) \
        + epb(2, SYN[14:], iface=1, endian=endian)
    assert "packet 2: interface 1's link type 147 is not one replay reads" in error(tmp_path, data, "c.pcapng")


@pytest.mark.parametrize("data", [
    shb() + epb(1, SYN),  # no interface at all
    shb() + idb() + epb(1, SYN, iface=1),
    shb() + idb() + idb() + epb(1, SYN, iface=2),
    shb() + spb(SYN),  # a simple packet belongs to interface 0
], ids=["none", "second", "third", "simple"])
def test_pcapng_undescribed_interface(tmp_path, data):
    assert "packet 1 names interface" in error(tmp_path, data, "c.pcapng")
    assert "that was never described" in error(tmp_path, data, "c.pcapng")


def test_pcapng_undescribed_interface_names_it(tmp_path):
    msg = error(tmp_path, shb() + idb() + epb(1, SYN) + epb(2, SYN, iface=7), "c.pcapng")
    assert "packet 2 names interface 7 that was never described" in msg


def test_pcapng_bad_byte_order_magic(tmp_path):
    bad = shb().replace(struct.pack("<I", 0x1A2B3C4D), b"\x00\x01\x02\x03")
    assert "bad pcapng byte-order magic" in error(tmp_path, bad + idb() + epb(1, SYN), "c.pcapng")


@pytest.mark.parametrize("cut", [1, 4, 20, 40])
def test_pcapng_truncated_block(tmp_path, cut):
    data = shb() + idb() + epb(1, SYN)
    assert "truncated block" in error(tmp_path, data[:-cut], "c.pcapng")


def test_pcapng_truncated_block_header(tmp_path):
    data = shb() + idb() + epb(1, SYN)
    assert "truncated block header after packet 1" in error(tmp_path, data + bytes(5), "c.pcapng")


@pytest.mark.parametrize("blen", [0, 8, 13, 30, (1 << 24) + 4, 0xFFFFFFFC])
def test_pcapng_corrupt_block_length(tmp_path, blen):
    data = shb() + idb() + struct.pack("<II", 6, blen) + bytes(64)
    assert f"corrupt block length {blen}" in error(tmp_path, data, "c.pcapng")


@pytest.mark.parametrize("blen", [0, 4, 8, 13, 0xFFFFFFFC])
def test_pcapng_corrupt_section_header_length(tmp_path, blen):
    data = struct.pack("<II", 0x0A0D0D0A, blen) + struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + bytes(64)
    assert "block length" in error(tmp_path, data, "c.pcapng")


@pytest.mark.parametrize("btype, body", [
    (6, b""), (6, bytes(16)),  # enhanced packet without its 20-byte header
    (1, b""), (1, bytes(4)),  # interface description without link type and snap length
    (3, b""),  # simple packet without its length
], ids=["epb-0", "epb-16", "idb-0", "idb-4", "spb-0"])
def test_pcapng_block_too_short_for_its_type(tmp_path, btype, body):
    interfaces = idb() if btype != 1 else b""
    assert "block" in error(tmp_path, shb() + interfaces + block(btype, body), "c.pcapng")


@pytest.mark.parametrize("options", [
    struct.pack("<HH", 9, 1),  # if_tsresol without its value
    struct.pack("<HH", 1, 40) + b"short",  # a comment longer than the block
], ids=["tsresol", "comment"])
def test_pcapng_option_past_the_end_of_its_block(tmp_path, options):
    bad_idb = block(1, struct.pack("<HHI", ETH, 0, 0) + options)
    assert "corrupt interface option" in error(tmp_path, shb() + bad_idb + epb(1, SYN), "c.pcapng")


def test_pcapng_packet_longer_than_its_block(tmp_path):
    body = struct.pack("<IIIII", 0, 0, 1, 1000, 1000) + SYN
    assert "truncated inside packet 1" in error(tmp_path, shb() + idb() + block(6, body), "c.pcapng")


def test_missing_file(tmp_path):
    path = str(tmp_path / "absent.pcap")
    with pytest.raises(CaptureError, match=r"absent.pcap: No such file or directory$"):
        list(pcap.read(path))


def test_directory(tmp_path):
    with pytest.raises(CaptureError, match=r": Is a directory$"):
        list(pcap.read(str(tmp_path)))


def test_capture_error_is_a_runtime_error():
    """Exit status 1 in the CLI, one line."""
    assert issubclass(CaptureError, SeawallError)


# --- the real captures ---------------------------------------------------------------

@pytest.mark.parametrize("name, packets, span, frame_len", [
    ("pkt.TCP.synflood.spoofed.pcap", 37841, 23.7, 60),
    ("amp.UDP.snmp.src161.pcapng", 4373, 0.023, None),
])
def test_real_capture(name, packets, span, frame_len):
    path = os.path.join(CAPTURES, name)
    if not os.path.exists(path):
        pytest.fail(f"shared capture missing: {path} (CI clones shared/ beside the repo)")
    frames = list(pcap.read(path))
    assert len(frames) == packets
    ts = [f.ts for f in frames]
    assert max(ts) - min(ts) == pytest.approx(span, abs=0.05 if span > 1 else 0.001)
    assert 1.5e9 < min(ts) < 2e9  # a plausible wall clock: the divisor is right
    assert all(f.wire_len >= len(f.data) > 14 for f in frames)
    assert all(f.data[12:14] in (b"\x08\x00", b"\x86\xdd", b"\x81\x00") for f in frames)  # Ethernet types
    if frame_len is not None:
        assert {len(f.data) for f in frames} == {frame_len}
