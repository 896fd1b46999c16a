"""The journal restores every unexpired decision after bpffs is emptied (as
after a reboot), and the kernel enforces the restored entries."""

from __future__ import annotations

import shutil
import time

from seawall.control.datapath import loader
from seawall.control.addr import Prefix
from seawall.control.lists.store import ListStore
from seawall.control.signature import Signature


def test_reboot_restores_unexpired_decisions(paths):
    st = ListStore(paths)
    st.allow_add([Prefix.parse("198.18.9.0/24")], reason="monitoring")
    st.block_add([Prefix.parse("198.18.0.66")], None, "manual forever")
    st.block_add([Prefix.parse("198.18.0.67")], 600, "manual 10m")
    st.block_add([Prefix.parse("2001:2::66")], 600, "auto v6", source="auto", extra={"score": 9.1})
    st.block_add([Prefix.parse("198.18.0.68")], 1, "expires at once")
    st.sig_add(Signature(17, sport=161), 600, "reflection", source="auto")
    before = {e.prefix: e for e in st.block_list()}
    st.close()
    time.sleep(1.2)

    shutil.rmtree(paths.pin_root)  # a reboot empties bpffs
    st2 = ListStore(paths)
    assert st2.restored == 5  # 1 allow + 3 live blocks + 1 rule; the expired block is left out
    after = {e.prefix: e for e in st2.block_list()}
    assert set(after) == {Prefix.parse("198.18.0.66"), Prefix.parse("198.18.0.67"), Prefix.parse("2001:2::66")}
    for p, e in after.items():
        assert e.reason == before[p].reason and e.source == before[p].source
        if before[p].expires_at is None:
            assert e.expires_at is None
        else:  # the wall-clock expiry survives the round trip through CLOCK_BOOTTIME
            assert abs(e.expires_at - before[p].expires_at) < 1.0
    assert [e.prefix for e in st2.allow_list()] == [Prefix.parse("198.18.9.0/24")]
    rules = st2.sig_list()
    assert [r["rule"] for r in rules] == ["udp sport 161"] and rules[0]["source"] == "auto"
    st2.close()


def test_restored_entries_are_enforced_by_the_kernel(paths):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from seawall.control.datapath import bpf

    st = ListStore(paths)
    st.block_add([Prefix.parse("198.18.0.66")], 600, "x")
    st.sig_add(Signature(17, sport=161), 600, "y")
    st.close()
    shutil.rmtree(paths.pin_root)
    ListStore(paths).close()  # restores into fresh maps
    loaded = loader.load(paths.pin_root, loader.iface_dir(paths.pin_root, "t"))
    try:
        def run(src, sport):
            pkt = bytes(Ether() / IP(src=src, dst="198.18.0.1") / UDP(sport=sport, dport=5000) / (b"x" * 20))
            return bpf.prog_test_run(loaded.prog_fd, pkt).retval

        assert run("198.18.0.66", 5000) == 1  # XDP_DROP: restored block
        assert run("198.18.0.10", 161) == 1  # restored signature
        assert run("198.18.0.10", 5000) == 2  # XDP_PASS
    finally:
        loaded.close()


def test_corrupt_journal_lines_are_skipped_and_the_rest_restored(paths):
    st = ListStore(paths)
    st.block_add([Prefix.parse("198.18.0.66")], None, "keep me")
    st.close()
    with open(paths.journal, "a") as f:
        f.write('{"v":1,"ts":"2026-01-01T00:00:00Z","op":"block","cidr":"not-an-address"}\n')
        f.write("garbage that is not json\n")
        f.write('{"v":1,"ts":"2026-01-01T00:00:00Z","op":"block","cidr":"198.18.0.77/32","expi')  # torn
    shutil.rmtree(paths.pin_root)
    st2 = ListStore(paths)
    assert [str(e.prefix) for e in st2.block_list()] == ["198.18.0.66/32"]
    assert len(st2.restore_skipped) == 3  # two unreadable lines and one bad address, all reported
    st2.close()
