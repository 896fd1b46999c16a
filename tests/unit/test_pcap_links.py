"""control/tools/pcap.py: the link types other than Ethernet (Linux cooked
SLL and SLL2, raw IP), each turned into the Ethernet frame the program
reads; corrupt records named by packet and byte offset; the streaming
scan. Captures are built byte by byte here (test_pcap's builders), and
tcpdump, which scripts/setup installs, must read each one the same way."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.control.tools import pcap
from seawall.control.tools.pcap import CaptureError
from seawall.control.tools.frames import internet_checksum
from test_pcap import epb, error, idb, pcap_file, read, shb, write

SLL, SLL2, RAW, IPV4, IPV6 = 113, 276, 101, 228, 229
MAC = bytes.fromhex("02aabbccddee")


def _ip4() -> bytes:
    """IPv4 TCP SYN 198.18.0.2:1234 -> 198.18.0.1:80, 40 bytes."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([198, 18, 0, 2]), bytes([198, 18, 0, 1]))
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    return ip + struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, 0x50, 0x02, 65535, 0, 0)


def _ip6() -> bytes:
    """IPv6 UDP [2001:2::2]:5353 -> [2001:2::1]:53, 8 bytes of payload."""
    a = bytes.fromhex("20010002000000000000000000000002")
    b = bytes.fromhex("20010002000000000000000000000001")
    return struct.pack("!IHBB16s16s", 6 << 28, 16, 17, 64, a, b) + struct.pack("!HHHH", 5353, 53, 16, 0) + bytes(8)


IP4, IP6 = _ip4(), _ip6()
ETH4 = bytes(12) + b"\x08\x00" + IP4  # what the reader must give for each
ETH6 = bytes(12) + b"\x86\xdd" + IP6


def sll(payload: bytes, proto=0x0800, pkttype=0, arphrd=1, addr=MAC) -> bytes:
    return struct.pack("!HHH8sH", pkttype, arphrd, len(addr), addr.ljust(8, b"\0"), proto) + payload


def sll2(payload: bytes, proto=0x0800, pkttype=0, arphrd=1, addr=MAC, ifindex=2) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, arphrd, pkttype, len(addr), addr.ljust(8, b"\0")) + payload


# link type, the two captured records (IPv4, IPv6), the Ethernet frames expected
CASES = {
    "sll": (SLL, [sll(IP4), sll(IP6, 0x86DD)], [bytes(6) + MAC + ETH4[12:], bytes(6) + MAC + ETH6[12:]]),
    "sll2": (SLL2, [sll2(IP4), sll2(IP6, 0x86DD)], [bytes(6) + MAC + ETH4[12:], bytes(6) + MAC + ETH6[12:]]),
    "raw": (RAW, [IP4, IP6], [ETH4, ETH6]),
    "dlt-raw-12": (12, [IP4, IP6], [ETH4, ETH6]),
    "dlt-raw-14": (14, [IP4, IP6], [ETH4, ETH6]),
    "ipv4": (IPV4, [IP4, IP4], [ETH4, ETH4]),
    "ipv6": (IPV6, [IP6, IP6], [ETH6, ETH6]),
}
# what tcpdump prints for each packet
TCPDUMP = {IP4: "IP 198.18.0.2.1234 > 198.18.0.1.80: Flags [S]", IP6: "IP6 2001:2::2.5353 > 2001:2::1.53"}


def _files(name):
    """(file name, bytes) of the case in every container: pcap in both byte
    orders, with micro- and nanosecond magic, and pcapng in both orders."""
    lt, recs, _ = CASES[name]
    for endian in "<>":
        for nano in (False, True):
            yield f"{name}-{endian == '<' and 'le' or 'be'}-{'ns' if nano else 'us'}.pcap", \
                pcap_file([(100 + i, 500 * i, r) for i, r in enumerate(recs)], endian, nano, linktype=lt)
        yield f"{name}-{endian == '<' and 'le' or 'be'}.pcapng", \
            shb(endian) + idb(endian, linktype=lt) \
            + b"".join(epb((100 + i) * 10**6, r, endian=endian) for i, r in enumerate(recs))


@pytest.mark.parametrize("name", CASES)
def test_link_type_read_as_ethernet(tmp_path, name):
    lt, recs, expected = CASES[name]
    for fname, data in _files(name):
        frames = read(tmp_path, data, fname)
        assert [f.data for f in frames] == expected, fname
        # the wire length is that of the Ethernet frame
        assert [f.wire_len for f in frames] == [len(e) for e in expected], fname
        assert frames[0].ts == 100.0 and 101.0 <= frames[1].ts < 101.001, fname
        assert not any(f.outgoing for f in frames)


@pytest.mark.parametrize("name", [n for n in CASES if n != "dlt-raw-14"])
def test_tcpdump_reads_the_crafted_captures_alike(tmp_path, name):
    """The files built here are real captures: tcpdump reads the same
    packets from them. (Link type 14, DLT_RAW of OpenBSD, is not one
    Linux's libpcap maps, so tcpdump here refuses it; Wireshark reads it
    as raw IP, as seawall does.)"""
    tcpdump = shutil.which("tcpdump") or shutil.which("/usr/bin/tcpdump") or shutil.which("/usr/sbin/tcpdump")
    if tcpdump is None:
        pytest.fail("tcpdump is missing: scripts/setup installs it")
    lt, recs, expected = CASES[name]
    for fname, data in _files(name):
        path = write(tmp_path, data, fname)
        p = subprocess.run([tcpdump, "-nn", "-r", path], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (fname, p.stderr)
        lines = p.stdout.splitlines()
        assert len(lines) == len(recs) == len(list(pcap.read(path))), (fname, p.stdout)
        for line, eth in zip(lines, expected):
            assert TCPDUMP[eth[14:]] in line, (fname, line)


@pytest.mark.parametrize("make", [sll, sll2], ids=["sll", "sll2"])
def test_cooked_header_fields(tmp_path, make):
    lt = SLL if make is sll else SLL2
    recs = [
        make(IP4, pkttype=4),  # sent by the capturing host
        make(IP4, addr=bytes(4), arphrd=778),  # an IP GRE tunnel: no MAC, protocol still an EtherType
        make(b"\x00\x10\x00\x00" + bytes(16), proto=0x0010, arphrd=824),  # netlink: the protocol is no EtherType
        make(struct.pack("!HH", 7, 0x0800) + IP4, proto=0x8100),  # a VLAN tag kept by the capture
        make(b"\x42\x42\x03" + bytes(40), proto=0x0004),  # 802.2 LLC
    ]
    frames = read(tmp_path, pcap_file([(1, 0, r) for r in recs], linktype=lt))
    assert [f.outgoing for f in frames] == [True, False, False, False, False]
    assert frames[0].data == bytes(6) + MAC + ETH4[12:]
    assert frames[1].data == ETH4  # no source MAC to keep
    assert frames[2].data[12:14] == b"\x00\x00"  # not IP
    assert frames[3].data == bytes(6) + MAC + b"\x81\x00" + struct.pack("!HH", 7, 0x0800) + IP4
    assert frames[4].data[12:14] == b"\x00\x04"
    s = pcap.scan(write(tmp_path, pcap_file([(1, 0, r) for r in recs], linktype=lt)))
    assert (s.packets, s.outgoing) == (4, 1)


def test_raw_ip_of_neither_version_is_not_ip(tmp_path):
    frames = read(tmp_path, pcap_file([(1, 0, b""), (2, 0, b"\x50" + bytes(30))], linktype=RAW))
    assert [f.data for f in frames] == [bytes(14), bytes(14) + b"\x50" + bytes(30)]


def test_snapped_cooked_record_keeps_its_wire_length(tmp_path):
    rec = sll(IP4)[:30]  # captured 30 bytes of a 56-byte packet
    f = read(tmp_path, pcap_file([(1, 0, rec, 56)], linktype=SLL))[0]
    assert (len(f.data), f.wire_len) == (28, 54)
    # a wire length below the captured one (corrupt) is taken as the captured one
    f = read(tmp_path, pcap_file([(1, 0, sll(IP4), 0)], linktype=SLL))[0]
    assert f.wire_len == len(f.data) == 54


@pytest.mark.parametrize("lt, hlen", [(SLL, 16), (SLL2, 20)])
def test_record_shorter_than_its_link_header(tmp_path, lt, hlen):
    data = pcap_file([(1, 0, sll(IP4) if lt == SLL else sll2(IP4)), (2, 0, bytes(hlen - 1))], linktype=lt)
    off = 24 + 16 + hlen + len(IP4)
    msg = error(tmp_path, data)
    assert f"packet 2 at byte {off} holds {hlen - 1} bytes, shorter than its {hlen}-byte link header" in msg


def test_errors_name_the_byte_offset(tmp_path):
    two = pcap_file([(1, 0, IP4), (2, 0, IP6)], linktype=RAW)
    assert "truncated inside packet 2 (record at byte 80, 56 bytes claimed, file ends at 100)" \
        in error(tmp_path, two[:100])
    assert "truncated record header after packet 2 (byte 152 of 157)" in error(tmp_path, two + bytes(5))
    bad = two + struct.pack("<IIII", 3, 0, 1 << 30, 1 << 30)
    assert "packet 3 claims 1073741824 bytes (corrupt record), at byte 152" in error(tmp_path, bad)
    ng = shb() + idb(linktype=RAW) + epb(1, IP4)
    at = len(ng)
    assert f"corrupt block length 7 after packet 1 (block at byte {at})" \
        in error(tmp_path, ng + struct.pack("<II", 6, 7) + bytes(20), "c.pcapng")
    assert f"truncated block after packet 1 (block at byte {at}, 64 bytes claimed, file ends at {at + 20})" \
        in error(tmp_path, ng + struct.pack("<II", 6, 64) + bytes(12), "c.pcapng")


def test_scan_counts_and_bounds_the_clock(tmp_path):
    recs = [(5, 0, IP4), (3, 0, IP4), (9, 500000, IP6), (7, 0, IP4)]  # out of order, as captures can be
    s = pcap.scan(write(tmp_path, pcap_file(recs, linktype=RAW)))
    assert s == pcap.Summary(packets=4, outgoing=0, first_ts=5.0, min_ts=3.0, max_ts=9.5)
    assert pcap.scan(write(tmp_path, pcap_file([]))) == pcap.Summary(0, 0, 0.0, 0.0, 0.0)
    ticks = []
    pcap.scan(write(tmp_path, pcap_file([(1, 0, IP4)] * 10, linktype=RAW)), ticks.append, every=4)
    assert ticks == [4, 8]


def test_scan_errors_like_read(tmp_path):
    with pytest.raises(CaptureError, match="truncated inside packet 1"):
        pcap.scan(write(tmp_path, pcap_file([(1, 0, IP4)], linktype=RAW)[:-1]))


SAMPLES = [data for name in CASES for _, data in _files(name)]


@st.composite
def damaged(draw):
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[at:at + 4] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at:]
            break
    return bytes(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged())
def test_damaged_cooked_or_raw_capture_is_frames_or_one_error(tmp_path, data):
    """Anything else (struct.error, IndexError) would be a traceback."""
    path = write(tmp_path, data)
    try:
        for f in pcap.read(path):
            assert isinstance(f.data, bytes) and f.wire_len >= 0 and isinstance(f.outgoing, bool), f
    except CaptureError as e:
        assert "\n" not in str(e)


def _peak(path, walk) -> int:
    tracemalloc.start()
    try:
        walk(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_takes_memory_that_does_not_grow_with_the_capture(tmp_path):
    """200,000 frames (12 MB of capture) are read and scanned in the memory
    of 2,000."""
    rec = struct.pack("<IIII", 1, 0, len(IP4), len(IP4)) + IP4
    head = pcap_file([], linktype=RAW)
    small, large = tmp_path / "small.pcap", tmp_path / "large.pcap"
    small.write_bytes(head + rec * 2000)
    large.write_bytes(head + rec * 200_000)
    for walk in (pcap.scan, lambda p: sum(1 for _ in pcap.read(p))):
        a, b = _peak(str(small), walk), _peak(str(large), walk)
        assert b < a + 64 * 1024 and b < 1 << 20, (a, b)
