/* SPDX-License-Identifier: GPL-2.0 */
/* Tunables: every one can be overridden at compile time with -DNAME=value
 * (control/kernel.py passes them from the Python side). Units in comments. */
#ifndef SEAWALL_TUNABLES_H
#define SEAWALL_TUNABLES_H

/* VLAN tags walked before the L3 header: 2 covers 802.1ad QinQ. */
#ifndef VLAN_MAX_DEPTH
#define VLAN_MAX_DEPTH 2
#endif

/* IPv6 extension headers walked before giving up on the L4 header. */
#ifndef IPV6_EXT_MAX_CHAIN
#define IPV6_EXT_MAX_CHAIN 8
#endif

/* Allowlist / blocklist capacities (entries per address family). */
#ifndef MAX_ALLOW_ENTRIES
#define MAX_ALLOW_ENTRIES 16384
#endif
#ifndef MAX_BLOCK_ENTRIES
#define MAX_BLOCK_ENTRIES 131072
#endif

/* List summaries (maps.h): 2^LIST_SUMMARY_LOG2 bits per list. An IPv4
 * source's bit is its top LIST_SUMMARY_LOG2 bits (24: its /24, the unit
 * the daemon aggregates to); an IPv6 source's is a hash of its top 32
 * bits. 2^24 bits are 2 MiB a list. Fewer bits would stay in a faster
 * cache but send a random source down the trie more often: with 100k
 * random entries, 2^20 bits (a /20 each) had 10% of them set and the
 * spoofed mix cost 1.5x more (BENCHMARKS.md). */
#ifndef LIST_SUMMARY_LOG2
#define LIST_SUMMARY_LOG2 24
#endif
#define LIST_SUMMARY_WORDS (1U << (LIST_SUMMARY_LOG2 - 6)) /* __u64 words */

/* Nested expired blocklist prefixes skipped per packet before the shorter
 * covering prefix is consulted. The control plane prunes expired entries,
 * so more than one level is rare; the bound keeps the verifier happy. */
#ifndef BLOCK_EXPIRED_HOPS
#define BLOCK_EXPIRED_HOPS 4
#endif

/* Tracked sources per interface (LRU, per-CPU values). */
#ifndef MAX_SOURCES_V4
#define MAX_SOURCES_V4 65536
#endif
#ifndef MAX_SOURCES_V6
#define MAX_SOURCES_V6 16384
#endif
/* Hot sources kept (LRU): enough for a botnet's members at once when
 * the source tables are too large to be read whole every cycle (past
 * 131,072 in all: service/sources.py's FULL_READ_MAX); a token size
 * otherwise, where the hot table is never used (a per-CPU LRU is
 * allocated whole when the program loads: 32k entries took 20 ms of a
 * daemon's start). */
#if MAX_SOURCES_V4 + MAX_SOURCES_V6 > 131072
#define SW_HOT_V4_DEFAULT 32768
#define SW_HOT_V6_DEFAULT 8192
#else
#define SW_HOT_V4_DEFAULT 256
#define SW_HOT_V6_DEFAULT 64
#endif
#ifndef HOT_SOURCES_V4
#define HOT_SOURCES_V4 SW_HOT_V4_DEFAULT
#endif
#ifndef HOT_SOURCES_V6
#define HOT_SOURCES_V6 SW_HOT_V6_DEFAULT
#endif

/* Admission doorkeeper: slots (power of two) remembering a source tag; a
 * source is inserted into the LRU only on its second sighting in its slot,
 * so a random-spoofed flood (every packet a new source) inserts nothing. */
#ifndef ADMIT_SLOTS
#define ADMIT_SLOTS 65536
#endif

/* Hard cap on LRU inserts, per CPU: a token bucket of ADMIT_BURST tokens
 * refilled at ADMIT_RATE tokens per second. Bounds evictions even when an
 * attacker repeats each spoofed source twice. */
#ifndef ADMIT_RATE
#define ADMIT_RATE 4096
#endif
#ifndef ADMIT_BURST
#define ADMIT_BURST 1024
#endif

/* Signature rules scanned per packet (only while rules exist). */
#ifndef MAX_SIGNATURES
#define MAX_SIGNATURES 16
#endif

/* Possible CPUs: a rate-limited signature grants each CPU 1/SW_NR_CPUS of
 * its rate (SW_NR_CPUS; the control plane passes the real number). */
#ifndef SW_NR_CPUS
#define SW_NR_CPUS 2
#endif

/* Feature histogram sizes (buckets). Ports are exact; sources are hashed. */
#ifndef SRC_BUCKETS
#define SRC_BUCKETS 4096
#endif
#define PORT_BUCKETS 65536
#define PROTO_BUCKETS 256
/* Packet length classes: frame length / LEN_CLASS_WIDTH, capped. */
#define LEN_CLASSES 16
#define FLAG_BUCKETS 64
/* Fragment classes (enum sw_frag_class), one spare. */
#define FRAG_BUCKETS 4
/* Destination address buckets: the last octet XORed with a hash of the
 * rest (dst_bucket_v4/v6 in seawall.c), a bijection on the last octet, so
 * it must stay 256. */
#define DST_BUCKETS 256
#ifndef LEN_CLASS_WIDTH
#define LEN_CLASS_WIDTH 128 /* bytes */
#endif

/* Blocklist entry "last hit" stamps are rewritten at most this often, so a
 * flood from one blocked source does not bounce the entry's cache line
 * between CPUs on every packet. */
#ifndef LAST_HIT_GRANULARITY_NS
#define LAST_HIT_GRANULARITY_NS 1000000000ULL /* 1 s */
#endif

#endif /* SEAWALL_TUNABLES_H */
