/* SPDX-License-Identifier: GPL-2.0 */
/* Structs, enums and flags shared with the control plane: the ABI's one
 * source. control/datapath/abi.py mirrors them, and tests/bpf/test_abi.py
 * checks that mirror against the BTF of the compiled object (struct
 * layouts, enumerators, every map's type and sizes), so the two cannot
 * drift. Flags are enums, not #defines, so that they reach the BTF. */
#ifndef SEAWALL_SHARED_H
#define SEAWALL_SHARED_H

/* Why a packet got its verdict. One per-CPU {packets, bytes} slot each. */
enum sw_reason {
	SW_PASS_CLEAN = 0,     /* passed: on no list; accounted */
	SW_PASS_ALLOW = 1,     /* passed: source on the allowlist */
	SW_DROP_BLOCK = 2,     /* dropped: source on the blocklist */
	SW_MON_BLOCK = 3,      /* passed in monitor mode, blocklist would drop */
	SW_PASS_NOT_IP = 4,    /* passed: neither IPv4 nor IPv6 (ARP, LLDP, ...) */
	SW_PASS_MALFORMED = 5, /* passed: L2 or fixed L3 header truncated,
				* either before the end of the source address
				* (nothing to judge) or from a source on no
				* list; the kernel stack discards it. A blocked
				* source whose address is whole still drops. */
	SW_DROP_SIG = 6,       /* dropped: matched a signature rule (or over its rate) */
	SW_MON_SIG = 7,        /* passed in monitor mode, a signature would drop */
	/* Ports under SYN protection (syn_ports): */
	SW_TX_SYNCOOKIE = 8,   /* a SYN answered here with a cookie SYN-ACK (XDP_TX) */
	SW_PASS_SYNCOOKIE = 9, /* an ACK carrying a valid cookie, passed on to
				* netfilter's SYNPROXY, which opens the
				* connection with the listening socket */
	SW_PASS_SOCKET = 10,   /* a segment of a connection the host holds a
				* socket for (established, closing) */
	SW_DROP_SYNPROXY = 11, /* dropped: a segment with no socket and no valid
				* cookie (spoofed ACKs, RSTs, FINs), or a SYN
				* no SYN-ACK can be made for (cut short, a
				* fragment, ACK or RST set with it) */
	SW_MON_SYNPROXY = 12,  /* passed in monitor mode, SYN protection would
				* have answered or dropped it */
	SW_REASON_MAX = 13,
};

/* Accounting events (per-CPU counters), not verdicts. */
enum sw_event {
	SW_EV_SRC_HIT = 0,        /* source already tracked: counters bumped */
	SW_EV_SRC_INSERT = 1,     /* source admitted into the tracking LRU */
	SW_EV_SRC_DEFERRED = 2,   /* first sighting: remembered by the doorkeeper only */
	SW_EV_SRC_BUDGET = 3,     /* admission refused: per-CPU insert budget spent */
	SW_EV_L4_UNPARSED = 4,    /* L4 header absent or truncated (judged on addresses) */
	SW_EV_FRAGMENT = 5,       /* non-first IP fragment (no L4 header) */
	SW_EV_BLOCK_EXPIRED = 6,  /* matched an expired blocklist entry, ignored it */
	SW_EV_IP_OPTIONS = 7,     /* IPv4 header with options */
	SW_EV_IPV6_EXT = 8,       /* IPv6 packet with extension headers */
	SW_EV_VLAN = 9,           /* VLAN-tagged frame (one or more tags) */
	SW_EVENT_MAX = 10,
};

/* Feature histogram layout: one per-CPU u64 array, features back to back. */
enum sw_feature {
	SW_FEAT_SRC = 0,   /* hashed source address, SRC_BUCKETS buckets */
	SW_FEAT_DPORT = 1, /* destination port, 65536 buckets (0: no port) */
	SW_FEAT_SPORT = 2, /* source port, 65536 buckets (0: no port) */
	SW_FEAT_PROTO = 3, /* IP protocol number, 256 buckets */
	SW_FEAT_LEN = 4,   /* frame length / LEN_CLASS_WIDTH, LEN_CLASSES buckets */
	SW_FEAT_FLAGS = 5, /* TCP flags & 0x3f, 64 buckets (0: not TCP or no flags) */
	SW_FEAT_FRAG = 6,  /* enum sw_frag_class, FRAG_BUCKETS buckets */
	SW_FEAT_DST = 7,   /* destination address, DST_BUCKETS buckets (dst_bucket_v4/v6) */
	SW_FEATURE_MAX = 8,
};

/* What a packet is as an IP fragment (SW_FEAT_FRAG's buckets). */
enum sw_frag_class {
	SW_FRAG_NONE = 0,  /* not a fragment (an IPv6 atomic fragment included) */
	SW_FRAG_FIRST = 1, /* first fragment: offset 0, more-fragments set; carries L4 */
	SW_FRAG_LATER = 2, /* non-first fragment: offset != 0, no L4 header */
	/* 3: reserved */
};

/* Per-interface configuration flags (config map, slot 0). */
enum sw_cfg_flags {
	SW_CFG_MONITOR = 1U << 0, /* count would-be drops, pass everything */
};

/* A port under SYN protection (struct sw_synport.flags). */
enum sw_synport_flags {
	SW_SYNPORT_ACTIVE = 1U << 0, /* slot in use */
	SW_SYNPORT_AUTO = 1U << 1,   /* turned on by the daemon, not by hand */
};

/* Blocklist entry flags. */
enum sw_block_flags {
	SW_BLOCK_AUTO = 1U << 0, /* installed by the daemon, not by hand */
};

struct sw_counter {
	__u64 packets;
	__u64 bytes; /* frame bytes as seen by XDP */
};

struct sw_config {
	__u16 flags;    /* SW_CFG_* (was a u32: the same bytes on little-endian) */
	__u16 hot_pkts; /* a source's packets on one CPU in one epoch that mark
			 * it hot (hot_v4/hot_v6); 0: no hot marks */
	__u32 epoch;    /* the daemon's cycle number, written each cycle */
};

/* LPM trie keys; addresses in network byte order. */
struct sw_lpm_v4 {
	__u32 prefixlen;
	__u32 addr;
};

struct sw_lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct sw_block {
	__u64 expires_ns;  /* CLOCK_BOOTTIME ns; 0 = never expires */
	__u64 last_hit_ns; /* CLOCK_BOOTTIME ns of a recent drop, 0 = none */
	__u32 prefixlen;   /* copy of the key's prefix length */
	__u32 flags;       /* SW_BLOCK_* */
};

struct sw_allow {
	__u32 prefixlen;
	__u32 flags;
};

/* Per-source counters, one copy per CPU (LRU per-CPU hash): no atomics. */
struct sw_source {
	__u64 packets;
	__u64 bytes;
	__u64 syns;    /* TCP segments with SYN set and ACK clear */
	/* Kept only while the daemon asks for hot marks (config.hot_pkts): */
	__u32 epoch;      /* the config's epoch of this CPU's last packet */
	__u16 epoch_pkts; /* this CPU's packets in that epoch (saturates) */
	__u16 was_hot;    /* this CPU's previous epoch was that one and hot */
};

/* Signature rule match bits: which fields of struct sw_sig are compared. */
enum sw_sig_match {
	SW_SIG_ACTIVE = 1U << 0, /* slot in use */
	SW_SIG_DPORT = 1U << 1,
	SW_SIG_SPORT = 1U << 2,
	SW_SIG_LEN = 1U << 3,
	SW_SIG_FLAGS = 1U << 4,
	SW_SIG_FRAG = 1U << 5, /* only non-first fragments (SW_FRAG_LATER) */
};
/* A rule matches a non-first fragment only with SW_SIG_FRAG set, and a
 * rule with SW_SIG_DPORT, SW_SIG_SPORT or SW_SIG_FLAGS never matches one:
 * such a packet has no L4 header, so no ports and no flags to compare
 * (the control plane never sets SW_SIG_FRAG beside them). */

/* A signature rule: protocol plus optional ports, length range, TCP flags,
 * or the non-first-fragment flag.
 * Host-wide array; the control plane fills slots 0..used-1. */
struct sw_sig {
	__u8 proto;
	__u8 match;     /* SW_SIG_* */
	__u8 tcp_flags; /* exact value of flags & 0x3f */
	__u8 pad;
	__u16 dport;    /* host byte order */
	__u16 sport;    /* host byte order */
	__u16 len_min;  /* frame bytes, inclusive */
	__u16 len_max;  /* frame bytes, exclusive */
	__u32 rate_pps; /* 0: drop every match; else pass up to this rate */
	__u64 expires_ns; /* CLOCK_BOOTTIME ns; 0 = never */
};

struct sw_sig_meta {
	__u32 used; /* slots to scan: highest active slot + 1 */
	__u32 pad;
};

/* A TCP port under SYN protection: slot `port` of syn_ports. SYNs to it
 * are answered in XDP with a cookie SYN-ACK carrying the options that
 * netfilter's SYNPROXY decodes from the timestamp (the nftables rule that
 * the control plane installs beside it, with the same wscale), and its
 * other segments pass only with a socket or a valid cookie. */
struct sw_synport {
	__u64 expires_ns; /* CLOCK_BOOTTIME ns; 0 = never */
	__u8 flags;       /* SW_SYNPORT_* */
	__u8 wscale;      /* window scale advertised: the nft rule's */
	__u16 mss4;       /* MSS advertised over IPv4 (the interface's MTU lowers it) */
	__u16 mss6;       /* and over IPv6 */
	__u16 pad;
};

/* Host-wide list flags (list_meta map, slot 0). */
enum sw_lists_flags {
	SW_LISTS_SUMMARISED = 1U << 0, /* the list summaries cover every entry */
};

struct sw_list_meta {
	__u32 flags; /* SW_LISTS_* */
	__u32 pad;
};

/* Kernel-only scratch state (never pinned, never read by the control
 * plane): a token bucket (insert budget, rate-limited signatures) ... */
struct sw_admit_bucket {
	__u64 tokens;
	__u64 last_ns;
};

/* ... a segment to a protected port, handed to SYN protection ... */
struct sw_syn_args {
	__u64 l3_off;
	__u64 l4_off;
	__u64 len;
	__u32 dport; /* 0: no candidate */
	__u32 v6;
	__u32 flags;
	__u32 frag;
};

/* ... and this CPU's last boot-clock reading with the jiffy it was taken
 * in: a block's expiry check and last_hit_ns reuse it within the jiffy
 * (stamp_ns() in seawall.c). */
struct sw_stamp {
	__u64 jiffies;
	__u64 ns;
};

#endif /* SEAWALL_SHARED_H */
