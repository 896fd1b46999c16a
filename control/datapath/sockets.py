"""The host's sockets, read with sock_diag (NETLINK_SOCK_DIAG).

In: the current network namespace's TCP and UDP sockets, IPv4 and IPv6.
Out: a `SocketTable` (numpy arrays) and the pure `Serving` built from it
(control/detect/serving.py), and `SocketWatch`, a thread that keeps one
fresh for the daemon.

The request is packed here (nlmsghdr and inet_diag_req_v2, as pyroute2's
`inet_diag_req` encodes it; importing pyroute2 cost the daemon 0.1 s at
start), and the answers are decoded here with numpy instead of
pyroute2's per-message decoder, which costs about 80 microseconds a socket
(DiagSocket.get_sock_stats: 3.8 s for 50k connections, against 0.1 s for
read_table; tests/netns/test_sockets.py measures). The netns test checks
this decoder against pyroute2's.

SYN_RECV sockets are never asked for: under a SYN flood they are the
flood's spoofed sources, by the hundred thousand.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import threading
import time
from typing import Callable, Optional

import numpy as np

from seawall.control.detect.serving import (CLOSE, EPHEMERAL, ESTABLISHED, LISTEN, SYN_RECV, Serving,
                                            SocketTable)
from seawall.control.errors import SeawallError

log = logging.getLogger("seawall.sockets")

# include/uapi/linux/netlink.h, sock_diag.h
NETLINK_SOCK_DIAG = 4
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
SOCK_DIAG_BY_FAMILY = 20
_NLMSG_HDR = 16  # struct nlmsghdr
# nlmsghdr, then inet_diag_req_v2: family, protocol, ext, pad, states, and
# a zeroed inet_diag_sockid (ports, addresses, interface, cookie: 48 bytes)
_REQUEST = struct.Struct("=IHHIIBBBxI48x")
_DIAG_MSG = 72  # struct inet_diag_msg
_INET_DIAG_SKV6ONLY = 11  # enum INET_DIAG_* (include/uapi/linux/inet_diag.h)
# every TCP state but SYN_RECV (see above) and CLOSE (bound, not listening:
# it takes no traffic); every UDP state (ESTABLISHED: connected; CLOSE: not)
_TCP_STATES = ((1 << 12) - 1) & ~(1 << SYN_RECV) & ~(1 << CLOSE)
_UDP_STATES = (1 << ESTABLISHED) | (1 << CLOSE)
_RECV = 1 << 16  # the kernel fills at most 32 KiB of a dump per read
_TIMEOUT = 5.0  # seconds: the longest wait for the kernel's next answer
_PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"  # per network namespace


def _request(family: int, proto: int, states: int, seq: int) -> bytes:
    """One SOCK_DIAG_BY_FAMILY dump request (nlmsghdr + inet_diag_req_v2)."""
    return _REQUEST.pack(_REQUEST.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0,
                         family, proto, 0, states)


def _dump(sock: socket.socket, family: int, proto: int, states: int, seq: int) -> tuple:
    """Run one dump; returns (the answers, in one buffer, and the offsets
    of the inet_diag_msg bodies in it)."""
    sock.send(_request(family, proto, states, seq))
    buf = bytearray(4 * _RECV)
    used, found = 0, []
    while True:
        if len(buf) - used < _RECV:
            buf.extend(bytes(len(buf)))  # doubles: no copy of what was read per datagram
        n = sock.recv_into(memoryview(buf)[used:], _RECV)
        if not n:
            raise SeawallError("sock_diag: the kernel closed the dump")
        offs, finished = _walk(buf, used, used + n, seq, family, proto)
        found.append(offs)
        used += n
        if finished:
            return buf, np.concatenate(found)


_HEADER = struct.Struct("=IHHI")  # nlmsghdr: length, type, flags, sequence (the port id unread)


def _walk(buf: bytearray, start: int, end: int, seq: int, family: int, proto: int) -> tuple:
    """The messages of one datagram buf[start:end]: (the offsets of its
    inet_diag_msg bodies, whether the dump ended). A dump's datagrams are
    runs of messages of one length (a TCP socket's attributes do not vary);
    those are found with numpy, the rest (the last datagram, with DONE) one
    by one."""
    length = _HEADER.unpack_from(buf, start)[0] if end - start >= _NLMSG_HDR else 0
    if length >= _NLMSG_HDR + _DIAG_MSG and length % 4 == 0 and (end - start) % length == 0:
        words = np.frombuffer(buf, np.uint32, (end - start) // 4, start)  # native order, as nlmsghdr
        halves = np.frombuffer(buf, np.uint16, (end - start) // 2, start)
        at = np.arange(0, (end - start) // 4, length // 4)
        if (words[at] == length).all() and (halves[2 * at + 2] == SOCK_DIAG_BY_FAMILY).all() and \
                (words[at + 2] == seq).all():
            return start + at.astype(np.int64) * 4 + _NLMSG_HDR, False
    offsets = []
    off = start
    while off + _NLMSG_HDR <= end:
        length, kind, _flags, mseq = _HEADER.unpack_from(buf, off)
        if length < _NLMSG_HDR or off + length > end:
            raise SeawallError(f"sock_diag: a malformed answer ({length} bytes at {off - start} of {end - start})")
        if mseq == seq:  # else a stale answer to an earlier request of this socket
            if kind == NLMSG_DONE or kind == NLMSG_ERROR:
                code = struct.unpack_from("=i", buf, off + _NLMSG_HDR)[0] if length >= _NLMSG_HDR + 4 else 0
                if code < 0:
                    raise _refused(-code, family, proto)
                if kind == NLMSG_DONE:
                    return np.asarray(offsets, np.int64), True
            elif kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSG_HDR + _DIAG_MSG:
                offsets.append(off + _NLMSG_HDR)
        off += (length + 3) & ~3
    return np.asarray(offsets, np.int64), False


def _refused(code: int, family: int, proto: int) -> SeawallError:
    what = f"{'TCP' if proto == socket.IPPROTO_TCP else 'UDP'}/IPv{4 if family == socket.AF_INET else 6}"
    if code == errno.ENOENT:
        return SeawallError(f"sock_diag cannot list {what} sockets: the kernel lacks "
                            f"{'tcp' if proto == socket.IPPROTO_TCP else 'udp'}_diag (CONFIG_INET_*_DIAG)")
    return SeawallError(f"sock_diag refused to list {what} sockets: {os.strerror(code)}")


def _decode(data, offs: np.ndarray, proto: int) -> SocketTable:
    """The inet_diag_msg bodies at offs, as a SocketTable."""
    buf = np.frombuffer(data, np.uint8)
    n = len(offs)
    family = np.where(buf[offs] == socket.AF_INET6, 6, 4).astype(np.uint8)
    state = buf[offs + 1].copy()
    lport = (buf[offs + 4].astype(np.uint16) << 8) | buf[offs + 5]
    rport = (buf[offs + 6].astype(np.uint16) << 8) | buf[offs + 7]
    cols = np.arange(16)
    laddr = buf[offs[:, None] + 8 + cols]
    raddr = buf[offs[:, None] + 24 + cols]
    v6only = np.zeros(n, bool)
    # IPV6_V6ONLY matters only where a socket serves (a listener, an
    # unconnected UDP socket): its attributes are walked for those alone
    for i in np.flatnonzero((family == 6) & ((state == LISTEN) | (state == CLOSE))):
        v6only[i] = _v6only(data, int(offs[i]))
    return SocketTable(np.full(n, proto, np.uint8), family, state, lport, rport, laddr, raddr, v6only)


def _v6only(data, body: int) -> bool:
    end = body - _NLMSG_HDR + struct.unpack_from("=I", data, body - _NLMSG_HDR)[0]
    off = body + _DIAG_MSG
    while off + 4 <= end:
        alen, kind = struct.unpack_from("=HH", data, off)
        if alen < 4:
            break
        if kind == _INET_DIAG_SKV6ONLY and alen >= 5:
            return data[off + 4] != 0
        off += (alen + 3) & ~3
    return False


def read_table() -> SocketTable:
    """Every TCP socket (but SYN_RECV and CLOSE) and every UDP socket of the
    current network namespace, IPv4 and IPv6. Raises SeawallError (one
    line) when the kernel will not tell."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
            sock.settimeout(_TIMEOUT)
            sock.bind((0, 0))
            parts = []
            seq = 1
            for proto, states in ((socket.IPPROTO_TCP, _TCP_STATES), (socket.IPPROTO_UDP, _UDP_STATES)):
                for family in (socket.AF_INET, socket.AF_INET6):
                    data, offs = _dump(sock, family, proto, states, seq)
                    parts.append(_decode(data, offs, proto))
                    seq += 1
    except socket.timeout:
        raise SeawallError(f"sock_diag: no answer from the kernel within {_TIMEOUT:.0f} s") from None
    except OSError as e:
        raise SeawallError(f"cannot read the host's sockets (sock_diag): {e.strerror or e}") from None
    return SocketTable.concat(parts)


def ephemeral_range(path: str = _PORT_RANGE) -> tuple:
    """The namespace's ephemeral ports (first, last); Linux's default
    when the file cannot be read."""
    try:
        with open(path) as f:
            lo, hi = (int(x) for x in f.read().split())
        return (lo, hi) if 0 < lo <= hi < 65536 else EPHEMERAL
    except (OSError, ValueError):
        return EPHEMERAL


def read_serving() -> Serving:
    """What the current network namespace serves, now. SeawallError when
    sock_diag fails: a caller can go on without it."""
    t = time.time()
    return Serving.from_table(read_table(), ephemeral_range(), taken_at=t)


class SocketWatch:
    """A thread that reads the host's sockets every `interval` seconds; the
    daemon asks `latest()` for the newest Serving without waiting.

        watch = SocketWatch(interval=1.0).start()
        serving = watch.latest()   # None until the first read succeeds
        watch.stop()               # stops and joins the thread

    A failed read is logged once (until a read succeeds again) and leaves
    the previous snapshot in place; `error` holds the last failure's text,
    `age()` how old the snapshot is, `read_seconds` what the last read cost.
    """

    def __init__(self, interval: float = 1.0, reader: Callable[[], Serving] = read_serving):
        if not interval > 0:
            raise ValueError("the interval must be positive")
        self.interval = float(interval)
        self._reader = reader
        self._latest: Optional[Serving] = None
        self._stop = threading.Event()
        self._first = threading.Event()  # set once the first read is done, however it went
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[str] = None
        self.read_seconds: Optional[float] = None
        self.reads = 0

    def start(self, wait: bool = True) -> "SocketWatch":
        """Start watching. wait: the first snapshot is read before start
        returns (when it can be had); else in the thread, and first()
        waits for it (a daemon attaching meanwhile)."""
        if self._thread is None:
            self._stop.clear()
            self._first.clear()
            if wait:
                self._first_read()
            self._thread = threading.Thread(target=self._run, args=(not wait,), name="seawall-sockets",
                                            daemon=True)
            self._thread.start()
        return self

    def _first_read(self) -> None:
        try:
            self.refresh()
        finally:
            self._first.set()

    def first(self, timeout: float) -> Optional[Serving]:
        """The first snapshot, waiting up to timeout seconds for it."""
        self._first.wait(timeout)
        return self._latest

    def refresh(self) -> Optional[Serving]:
        """Read now (in the caller's thread); the new snapshot, or None."""
        t0 = time.monotonic()
        try:
            serving = self._reader()
        except SeawallError as e:
            if self.error != str(e):
                log.warning("cannot read the host's sockets, going on without: %s", e)
            self.error = str(e)
            return None
        self.read_seconds = time.monotonic() - t0
        self.reads += 1
        if self.error is not None:
            log.info("the host's sockets are readable again")
        self.error = None
        self._latest = serving
        return serving

    def _run(self, first: bool = False) -> None:
        if first:
            try:
                self._first_read()
            except Exception as e:
                log.exception("reading the host's sockets failed")
                self.error = f"{type(e).__name__}: {e}"
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception as e:  # a bug must not end the watch silently, nor the daemon
                log.exception("reading the host's sockets failed")
                self.error = f"{type(e).__name__}: {e}"

    def latest(self) -> Optional[Serving]:
        return self._latest

    def age(self) -> Optional[float]:
        """Seconds since the latest snapshot was taken (None: none yet)."""
        return None if self._latest is None else max(0.0, time.time() - self._latest.taken_at)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "SocketWatch":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
