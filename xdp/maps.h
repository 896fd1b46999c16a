/* SPDX-License-Identifier: GPL-2.0 */
/* Every map the program uses. Host-wide lists are pinned under PIN_ROOT and
 * shared by every attached interface; counters are pinned per interface
 * under IFACE_PIN_DIR. Both paths come from the control plane as string
 * defines (control/kernel.py); bcc opens a pinned map that exists and
 * creates and pins it when it does not. */
#ifndef SEAWALL_MAPS_H
#define SEAWALL_MAPS_H

#include "shared.h"
#include "tunables.h"

#ifndef PIN_ROOT
#error "PIN_ROOT must be defined (bpffs directory of the host-wide maps)"
#endif
#ifndef IFACE_PIN_DIR
#error "IFACE_PIN_DIR must be defined (bpffs directory of this interface)"
#endif

/* --- host-wide, shared by every interface --------------------------------
 * LPM tries: longest-prefix match on the source address. A trie must be
 * created with BPF_F_NO_PREALLOC. Updates from the control plane only. */

/* Trusted sources: passed before any other check. */
BPF_TABLE_PINNED("lpm_trie", struct sw_lpm_v4, struct sw_allow, allow_v4,
		 MAX_ALLOW_ENTRIES, PIN_ROOT "/allow_v4", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct sw_lpm_v6, struct sw_allow, allow_v6,
		 MAX_ALLOW_ENTRIES, PIN_ROOT "/allow_v6", BPF_F_NO_PREALLOC);

/* Blocked sources, each with its own expiry checked here in the kernel, so
 * an entry stops dropping when it expires even with no daemon running. */
BPF_TABLE_PINNED("lpm_trie", struct sw_lpm_v4, struct sw_block, block_v4,
		 MAX_BLOCK_ENTRIES, PIN_ROOT "/block_v4", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("lpm_trie", struct sw_lpm_v6, struct sw_block, block_v6,
		 MAX_BLOCK_ENTRIES, PIN_ROOT "/block_v6", BPF_F_NO_PREALLOC);

/* Blocked hosts: the /32 and /128 entries of block_v4/v6, mirrored by the
 * control plane (control/lists.py writes the trie first and deletes here
 * first, so an entry here always has its twin in the trie). An exact
 * match is one hash lookup where the trie walks some twenty levels for
 * 100k entries (71 ns here, BENCHMARKS.md), and the daemon's blocks are
 * mostly hosts. The trie stays the list: a miss here, or an expired entry,
 * walks it as before, so a mirror that is behind is slower, never wrong. */
BPF_TABLE_PINNED("hash", __u32, struct sw_block, block_host_v4,
		 MAX_BLOCK_ENTRIES, PIN_ROOT "/block_host_v4", BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("hash", struct in6_addr, struct sw_block, block_host_v6,
		 MAX_BLOCK_ENTRIES, PIN_ROOT "/block_host_v6", BPF_F_NO_PREALLOC);

/* List summaries: bit i of a list's summary is set when one of its entries
 * may cover a source whose summary bit is i (list_summary_bit() in
 * seawall.c). A clear bit proves the trie holds nothing for the source and
 * saves the walk: a dependent memory access per trie level, some twenty
 * levels for 100k entries, each a cache miss for a random-spoofed source.
 * The control plane sets a bit before writing any entry it covers and
 * never clears one under a live entry (control/summary.py). Arrays: a
 * fixed bitmap, read with one inlined lookup. */
BPF_TABLE_PINNED("array", __u32, __u64, allow_sum_v4, LIST_SUMMARY_WORDS,
		 PIN_ROOT "/allow_sum_v4", 0);
BPF_TABLE_PINNED("array", __u32, __u64, allow_sum_v6, LIST_SUMMARY_WORDS,
		 PIN_ROOT "/allow_sum_v6", 0);
BPF_TABLE_PINNED("array", __u32, __u64, block_sum_v4, LIST_SUMMARY_WORDS,
		 PIN_ROOT "/block_sum_v4", 0);
BPF_TABLE_PINNED("array", __u32, __u64, block_sum_v6, LIST_SUMMARY_WORDS,
		 PIN_ROOT "/block_sum_v6", 0);
/* Slot 0: SW_LISTS_* flags. The summaries are used only once the control
 * plane has built them from the tries (SW_LISTS_SUMMARISED): maps created
 * fresh beside existing tries are ignored until then. */
BPF_TABLE_PINNED("array", __u32, struct sw_list_meta, list_meta, 1,
		 PIN_ROOT "/list_meta", 0);

/* Signature rules for spoofed and reflected floods, and how many slots are
 * in use (slot 0 of sig_meta) so that the common case, no rules, costs one
 * array read. Array: fixed slots, updated in place by the control plane. */
BPF_TABLE_PINNED("array", __u32, struct sw_sig, sigs, MAX_SIGNATURES,
		 PIN_ROOT "/sigs", 0);
BPF_TABLE_PINNED("array", __u32, struct sw_sig_meta, sig_meta, 1,
		 PIN_ROOT "/sig_meta", 0);

/* Ports under SYN protection, indexed by the port (host byte order): an
 * array, so every TCP segment's check is one inlined read. 1 MiB. */
BPF_TABLE_PINNED("array", __u32, struct sw_synport, syn_ports, 65536,
		 PIN_ROOT "/syn_ports", 0);

/* --- per interface -------------------------------------------------------- */

/* Slot 0: this interface's flags (monitor mode), flipped at run time. */
BPF_TABLE_PINNED("array", __u32, struct sw_config, config, 1,
		 IFACE_PIN_DIR "/config", 0);

/* Verdict counters by enum sw_reason. Per-CPU: plain increments, no atomics. */
BPF_TABLE_PINNED("percpu_array", __u32, struct sw_counter, stats,
		 SW_REASON_MAX, IFACE_PIN_DIR "/stats", 0);

/* Accounting event counters by enum sw_event. Per-CPU. */
BPF_TABLE_PINNED("percpu_array", __u32, __u64, events, SW_EVENT_MAX,
		 IFACE_PIN_DIR "/events", 0);

/* Feature histograms for entropy scoring, enum sw_feature back to back:
 * cumulative packet counts, one copy per CPU; the daemon differences two
 * reads of their sum. */
#define FEAT_OFF_SRC 0
#define FEAT_OFF_DPORT (FEAT_OFF_SRC + SRC_BUCKETS)
#define FEAT_OFF_SPORT (FEAT_OFF_DPORT + PORT_BUCKETS)
#define FEAT_OFF_PROTO (FEAT_OFF_SPORT + PORT_BUCKETS)
#define FEAT_OFF_LEN (FEAT_OFF_PROTO + PROTO_BUCKETS)
#define FEAT_OFF_FLAGS (FEAT_OFF_LEN + LEN_CLASSES)
#define FEAT_OFF_FRAG (FEAT_OFF_FLAGS + FLAG_BUCKETS)
#define FEAT_OFF_DST (FEAT_OFF_FRAG + FRAG_BUCKETS)
#define FEAT_SLOTS (FEAT_OFF_DST + DST_BUCKETS)
/* One region of FEAT_SLOTS counters per possible CPU, each written by
 * its CPU only, in one array the daemon maps into its memory
 * (BPF_F_MMAPABLE): a cycle's read is a memory copy and a sum, not a batch
 * syscall (a per-CPU array of these 136k slots took 40 ms to read). */
BPF_TABLE_PINNED("array", __u32, __u64, features, SW_NR_CPUS * FEAT_SLOTS,
		 IFACE_PIN_DIR "/features", BPF_F_MMAPABLE);

/* Tracked sources: a bounded LRU whose value holds one struct sw_source
 * per possible CPU, each written by its own CPU (no atomics), laid out as
 * a per-CPU map's value reads back. Not a per-CPU LRU: the kernel
 * allocates each entry's per-CPU copies one by one when it creates one,
 * 44 ms at every load for 64k entries on two CPUs (a daemon started
 * during a flood waits for it), where one shared table takes 3 ms.
 * Inserts are gated by the doorkeeper and the insert budget below. */
struct sw_source_cpus {
	struct sw_source cpu[SW_NR_CPUS];
};
BPF_TABLE_PINNED("lru_hash", __u32, struct sw_source_cpus, src_v4,
		 MAX_SOURCES_V4, IFACE_PIN_DIR "/src_v4", 0);
BPF_TABLE_PINNED("lru_hash", struct in6_addr, struct sw_source_cpus, src_v6,
		 MAX_SOURCES_V6, IFACE_PIN_DIR "/src_v6", 0);
/* A new source's value before its first packet: all zero, never written
 * (too large for the stack on a host with many CPUs). Scratch. */
BPF_ARRAY(src_zero, struct sw_source_cpus, 1);

/* Hot sources: the tracked sources that sent config.hot_pkts packets on
 * one CPU in one epoch (one daemon cycle), counted again here from then
 * on while they stay hot, per CPU. With a large source table the daemon
 * reads this one every cycle and the table itself a slice at a time (a
 * batch read of a million per-CPU entries takes half a second). Only
 * written while config.hot_pkts is set. */
BPF_TABLE_PINNED("lru_percpu_hash", __u32, struct sw_source, hot_v4,
		 HOT_SOURCES_V4, IFACE_PIN_DIR "/hot_v4", 0);
BPF_TABLE_PINNED("lru_percpu_hash", struct in6_addr, struct sw_source, hot_v6,
		 HOT_SOURCES_V6, IFACE_PIN_DIR "/hot_v6", 0);

/* Packets and bytes matched per signature slot. Per-CPU. */
BPF_TABLE_PINNED("percpu_array", __u32, struct sw_counter, sig_hits,
		 MAX_SIGNATURES, IFACE_PIN_DIR "/sig_hits", 0);

/* Token buckets of rate-limited signatures, per CPU. Scratch, not pinned. */
BPF_PERCPU_ARRAY(sig_rate, struct sw_admit_bucket, MAX_SIGNATURES);

/* Doorkeeper: slots holding the tag of the last source hashed there, one
 * region of ADMIT_SLOTS per CPU, each written by its own CPU only (a plain
 * array is allocated at once; a per-CPU one of these 64k slots took 35 ms
 * of a daemon's start). Scratch state, not pinned. */
BPF_ARRAY(admit_tags, __u32, SW_NR_CPUS * ADMIT_SLOTS);

/* Insert budget: per-CPU token bucket. Scratch state, not pinned. */
BPF_PERCPU_ARRAY(admit_budget, struct sw_admit_bucket, 1);

/* A segment to a protected port's particulars, written and read back
 * (synproxy_out() in seawall.c). Kernel-only scratch, not pinned. */
BPF_PERCPU_ARRAY(syn_args, struct sw_syn_args, 1);

/* This CPU's last boot-clock reading (struct sw_stamp). Kernel-only and
 * per-CPU, so no atomics. Scratch state, not pinned. */
BPF_PERCPU_ARRAY(stamp_cache, struct sw_stamp, 1);

#endif /* SEAWALL_MAPS_H */
