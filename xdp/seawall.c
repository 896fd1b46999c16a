/* SPDX-License-Identifier: GPL-2.0 */
/* seawall: XDP DDoS filter. One program instance per interface.
 *
 * Pipeline, as a straight read:
 *   parse L2/L3 -> allowlist (PASS) -> blocklist (DROP) -> parse L4
 *   -> signatures (DROP or rate-limit) -> accounting (PASS)
 *   -> SYN protection of its port (TX a cookie SYN-ACK, PASS or DROP)
 * Every path leaves through `out:`, which counts the verdict's reason in a
 * per-CPU array and returns. Addresses are judged before any L4 parsing, so
 * a truncated or fragmented L4 header never hides a blocked source.
 *
 * Every helper's name is in parentheses where it is defined, so that a
 * build may stand a macro in for one: a function-like macro never expands
 * a name followed by ')'. The program carries no switch of its own for
 * that; `seawall bench --profile` builds its variants by force-including
 * xdp/bench/profile.h, which replaces a stage's helper with a stub. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/icmp.h>

#include "tunables.h"
#include "shared.h"
#include "parsing.h"
#include "maps.h"

#define CONTINUE (-1)

/* Past the furthest L4 header the parser can find: Ethernet, its tags, an
 * IPv6 header and IPV6_EXT_MAX_CHAIN extension headers of at most 2048
 * bytes each (an IPv4 header ends by byte 82). A bound the verifier needs
 * to add the offset to the packet pointer; no frame reaches it. */
#define L4_OFF_MAX 0x7fff
_Static_assert(ETH_HLEN + 4 * VLAN_MAX_DEPTH + 40 + 2048 * IPV6_EXT_MAX_CHAIN <= L4_OFF_MAX,
	       "an extension chain can end past L4_OFF_MAX");

static __always_inline void (count_event)(__u32 ev)
{
	__u64 *v = events.lookup(&ev);

	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

/* CLOCK_BOOTTIME ns. A helper call is the dearest thing on the hot path
 * (tens of ns, BENCHMARKS.md), so the clock is read where a decision needs
 * it to the nanosecond and nowhere else: the signature rules' expiry and
 * rate limits while there are any, the admission budget. A packet from an
 * untracked source on no list, with no signature rule in force, never
 * reads it. Reading it
 * there rather than at the packet's start changes nothing a decision
 * depends on. (No "read once" cache on the stack: a value that is either
 * unread or read doubles the states the verifier walks.) */
static __always_inline __u64 (clock_ns)(void)
{
	return bpf_ktime_get_boot_ns();
}

/* A CLOCK_BOOTTIME stamp taken in the current jiffy, so behind the clock
 * by less than one jiffy (1 to 10 ms): for a block's expiry and its
 * last_hit_ns. The boot clock is read at most once per jiffy per CPU;
 * bpf_jiffies64() is an inlined load. Rate limits and the admission
 * budget keep the exact clock_ns(). */
static __always_inline __u64 (stamp_ns)(void)
{
	__u32 zero = 0;
	struct sw_stamp *c = stamp_cache.lookup(&zero);
	__u64 j;

	if (!c)
		return clock_ns();
	j = bpf_jiffies64();
	if (c->jiffies != j || !c->ns) {
		c->ns = clock_ns();
		c->jiffies = j;
	}
	return c->ns;
}

/* Multiplicative hashes (Knuth); only their spread matters. */
static __always_inline __u32 (hash_v4)(__u32 addr)
{
	return addr * 2654435761U;
}

static __always_inline __u32 (hash_v6)(const __u32 *w)
{
	return (w[0] ^ (w[1] * 0x9E3779B1U) ^ (w[2] * 0x85EBCA77U) ^
		(w[3] * 0xC2B2AE3DU)) * 2654435761U;
}

/* The destination address's bucket in the SW_FEAT_DST histogram: its last
 * octet XORed with the top 8 bits of a multiplicative hash of the rest.
 * For a fixed rest this is a bijection on the last octet, so a host's
 * addresses that differ only there (several in one IPv4 /24, or one IPv6
 * /120) never share a bucket; others, an IPv4 and an IPv6 address among
 * them, share one with probability 1/256. control/datapath/abi.py's
 * dst_bucket() is the same function. Addresses in network byte order. */
static __always_inline __u32 (dst_bucket_v4)(__u32 daddr)
{
	__u32 a = bpf_ntohl(daddr);

	return (a ^ (((a >> 8) * 0x9E3779B1U) >> 24)) & (DST_BUCKETS - 1);
}

static __always_inline __u32 (dst_bucket_v6)(const __u32 *w)
{
	__u32 a = bpf_ntohl(w[3]);
	__u32 h = (bpf_ntohl(w[0]) * 0x85EBCA77U) ^ (bpf_ntohl(w[1]) * 0xC2B2AE3DU) ^
		  (bpf_ntohl(w[2]) * 0x27D4EB2FU) ^ (a >> 8);

	return (a ^ ((h * 0x9E3779B1U) >> 24)) & (DST_BUCKETS - 1);
}

/* --- lists ------------------------------------------------------------- */

/* Are the list summaries (maps.h) complete? Until the control plane has
 * built them from the tries, every check walks its trie. */
static __always_inline int (lists_summarised)(void)
{
	__u32 zero = 0;
	struct sw_list_meta *m = list_meta.lookup(&zero);

	return m && (m->flags & SW_LISTS_SUMMARISED);
}

/* The source's bit in the list summaries, or -1 to walk the tries. IPv4:
 * the address's top LIST_SUMMARY_LOG2 bits. IPv6: a multiplicative hash of
 * its top 32 bits (an operator's /32 lands on one bit). control/summary.py
 * computes the same indices. */
static __always_inline __s64 (summary_bit_v4)(__u32 saddr)
{
	if (!lists_summarised())
		return -1;
	return bpf_ntohl(saddr) >> (32 - LIST_SUMMARY_LOG2);
}

static __always_inline __s64 (summary_bit_v6)(const struct in6_addr *saddr)
{
	if (!lists_summarised())
		return -1;
	return (__u32)(bpf_ntohl(saddr->s6_addr32[0]) * 2654435761U) >>
	       (32 - LIST_SUMMARY_LOG2);
}

/* 1 when a summary word proves its list has no entry for the source. */
static __always_inline int (summary_clear)(const __u64 *word, __s64 bit)
{
	return bit >= 0 && word && !(*word & (1ULL << (bit & 63)));
}

/* Both checks also hand back the source's summary bit for the blocklist. */
static __always_inline int (check_allow_v4)(__u32 saddr, __s64 *sbit)
{
	struct sw_lpm_v4 key = { .prefixlen = 32, .addr = saddr };
	__u32 w;

	*sbit = summary_bit_v4(saddr);
	w = *sbit >> 6;
	if (summary_clear(allow_sum_v4.lookup(&w), *sbit))
		return CONTINUE;
	return allow_v4.lookup(&key) ? XDP_PASS : CONTINUE;
}

static __always_inline int (check_allow_v6)(const struct in6_addr *saddr,
					  __s64 *sbit)
{
	struct sw_lpm_v6 key = { .prefixlen = 128 };
	__u32 w;

	*sbit = summary_bit_v6(saddr);
	w = *sbit >> 6;
	if (summary_clear(allow_sum_v6.lookup(&w), *sbit))
		return CONTINUE;
	__builtin_memcpy(key.addr, saddr, 16);
	return allow_v6.lookup(&key) ? XDP_PASS : CONTINUE;
}

/* Decide on a blocklist match. An expired entry is skipped and the lookup
 * repeated with a shorter key prefix length (an LPM lookup with prefix
 * length N only matches entries of length <= N), so an expired /32 inside
 * a live /24 does not unblock the /24. Returns 1 for a live match. */
static __always_inline int (block_in_force)(struct sw_block *b)
{
	/* Expiry is decided on the jiffy stamp, as conntrack's timeouts are
	 * on jiffies: a block lives at most one jiffy (1 to 10 ms) past its
	 * time, and a drop costs no clock read (36-45 ns here, BENCHMARKS.md). */
	__u64 t = stamp_ns();

	if (b->expires_ns && b->expires_ns <= t)
		return 0;
	/* Refresh the stamp at most every LAST_HIT_GRANULARITY_NS: a
	 * read-mostly line does not bounce between CPUs. */
	if (t - b->last_hit_ns > LAST_HIT_GRANULARITY_NS)
		b->last_hit_ns = t;
	return 1;
}

static __always_inline int (block_live)(struct sw_block *b, __u32 *next_plen)
{
	if (block_in_force(b))
		return 1;
	count_event(SW_EV_BLOCK_EXPIRED);
	if (b->prefixlen == 0)
		return -1; /* the default route expired: nothing shorter */
	*next_plen = b->prefixlen - 1;
	return 0;
}

static __always_inline int (check_block_v4)(__u32 saddr, __s64 sbit)
{
	struct sw_lpm_v4 key = { .prefixlen = 32, .addr = saddr };
	struct sw_block *b;
	__u32 w = sbit >> 6;
	int i, live;

	if (summary_clear(block_sum_v4.lookup(&w), sbit))
		return CONTINUE;
	/* A blocked host in one lookup. Expired or absent: the trie decides
	 * (and counts the expiry), exactly as without the mirror. */
	b = block_host_v4.lookup(&saddr);
	if (b && block_in_force(b))
		return XDP_DROP;
#pragma unroll
	for (i = 0; i < BLOCK_EXPIRED_HOPS; i++) {
		b = block_v4.lookup(&key);
		if (!b)
			return CONTINUE;
		live = block_live(b, &key.prefixlen);
		if (live > 0)
			return XDP_DROP;
		if (live < 0)
			return CONTINUE;
	}
	return CONTINUE;
}

static __always_inline int (check_block_v6)(const struct in6_addr *saddr,
					  __s64 sbit)
{
	struct sw_lpm_v6 key = { .prefixlen = 128 };
	struct sw_block *b;
	__u32 w = sbit >> 6;
	int i, live;

	if (summary_clear(block_sum_v6.lookup(&w), sbit))
		return CONTINUE;
	__builtin_memcpy(key.addr, saddr, 16);
	b = block_host_v6.lookup((struct in6_addr *)key.addr); /* as in check_block_v4 */
	if (b && block_in_force(b))
		return XDP_DROP;
#pragma unroll
	for (i = 0; i < BLOCK_EXPIRED_HOPS; i++) {
		b = block_v6.lookup(&key);
		if (!b)
			return CONTINUE;
		live = block_live(b, &key.prefixlen);
		if (live > 0)
			return XDP_DROP;
		if (live < 0)
			return CONTINUE;
	}
	return CONTINUE;
}

/* --- accounting ------------------------------------------------------------ */

/* This CPU's counter of a histogram slot: base is this CPU's region of
 * the features array (maps.h); a CPU writes only its own, so a plain add
 * is enough. */
static __always_inline void (feature_bump)(__u32 base, __u32 slot)
{
	__u32 idx = base + slot;
	__u64 *v = features.lookup(&idx);

	if (v)
		*v += 1;
}

/* Doorkeeper and budget: may this never-seen source take an LRU slot?
 * An LRU insert costs an order of magnitude more than a hit and evicts a
 * tracked source, so a random-spoofed flood must not get one per packet. */
static __always_inline int (admit)(__u32 hash)
{
	/* The low bits of a multiplicative hash depend only on the key's low
	 * bits (an IPv4 address's first two octets): fold the high half in,
	 * or every source of a /16 shares one slot and overwrites the others'
	 * first sighting. */
	__u32 slot = (hash ^ (hash >> 16)) & (ADMIT_SLOTS - 1);
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 tag = hash | 1; /* 0 marks an empty slot */
	__u32 zero = 0;
	struct sw_admit_bucket *bkt;
	__u32 *seen;
	__u64 elapsed, t;

	if (cpu >= SW_NR_CPUS)
		return 0;
	slot += cpu * ADMIT_SLOTS; /* this CPU's region */
	seen = admit_tags.lookup(&slot);
	if (!seen)
		return 0;
	if (*seen != tag) {
		*seen = tag; /* first sighting: remember, do not insert */
		count_event(SW_EV_SRC_DEFERRED);
		return 0;
	}
	bkt = admit_budget.lookup(&zero);
	if (!bkt)
		return 0;
	t = clock_ns();
	elapsed = t - bkt->last_ns;
	if (elapsed >= 1000000000ULL / ADMIT_RATE) {
		__u64 add = elapsed / (1000000000ULL / ADMIT_RATE);

		bkt->tokens = bkt->tokens + add > ADMIT_BURST ?
			ADMIT_BURST : bkt->tokens + add;
		bkt->last_ns = t;
	}
	if (!bkt->tokens) {
		count_event(SW_EV_SRC_BUDGET);
		return 0;
	}
	bkt->tokens--;
	*seen = 0;
	return 1;
}

/* No time stamp: the daemon scores what changed between two reads, and
 * a stamp cost 12 ns a packet on the pass path (BENCHMARKS.md). With hot
 * marks off (hot_pkts 0, the default tables) that is all; with them on,
 * the source's count in this epoch on this CPU. Returns whether the
 * source is hot on this CPU: hot_pkts packets in this epoch, or in the
 * previous one. */
static __always_inline int (source_bump)(struct sw_source *s, __u64 len,
				       int syn, __u32 epoch, __u32 hot_pkts)
{
	s->packets += 1;
	s->bytes += len;
	s->syns += syn;
	if (!hot_pkts)
		return 0;
	if (s->epoch != epoch) {
		s->was_hot = s->epoch + 1 == epoch && s->epoch_pkts >= hot_pkts;
		s->epoch = epoch;
		s->epoch_pkts = 0;
	}
	if (s->epoch_pkts < 0xffff)
		s->epoch_pkts += 1;
	return s->was_hot || s->epoch_pkts >= hot_pkts;
}

/* A hot source's packet, counted again in the hot table (per-CPU: no
 * atomics); the packets before it turned hot are only in the source table. */
static __always_inline void (hot_bump)(struct sw_source *h, __u64 len, int syn)
{
	h->packets += 1;
	h->bytes += len;
	h->syns += syn;
}

static __always_inline void (account_v4)(__u32 saddr, __u32 hash, __u64 len,
				       int syn, __u32 epoch, __u32 hot_pkts,
				       __u32 cpu)
{
	struct sw_source_cpus *all;
	struct sw_source *s, fresh = {};
	__u32 z = 0;

	if (cpu >= SW_NR_CPUS)
		return;
	all = src_v4.lookup(&saddr);
	if (all) {
		count_event(SW_EV_SRC_HIT);
	} else {
		struct sw_source_cpus *zero = src_zero.lookup(&z);

		if (!admit(hash) || !zero)
			return;
		if (src_v4.insert(&saddr, zero) == 0) /* not if another CPU did */
			count_event(SW_EV_SRC_INSERT);
		all = src_v4.lookup(&saddr);
		if (!all)
			return;
	}
	if (!source_bump(&all->cpu[cpu], len, syn, epoch, hot_pkts))
		return;
	s = hot_v4.lookup(&saddr);
	if (s) {
		hot_bump(s, len, syn);
	} else {
		hot_bump(&fresh, len, syn);
		hot_v4.update(&saddr, &fresh);
	}
}

/* saddr: a copy on the stack (the map key), not a packet pointer. */
static __always_inline void (account_v6)(struct in6_addr *saddr,
				       __u32 hash, __u64 len, int syn,
				       __u32 epoch, __u32 hot_pkts, __u32 cpu)
{
	struct sw_source_cpus *all;
	struct sw_source *s, fresh = {};
	__u32 z = 0;

	if (cpu >= SW_NR_CPUS)
		return;
	all = src_v6.lookup(saddr);
	if (all) {
		count_event(SW_EV_SRC_HIT);
	} else {
		struct sw_source_cpus *zero = src_zero.lookup(&z);

		if (!admit(hash) || !zero)
			return;
		if (src_v6.insert(saddr, zero) == 0) /* not if another CPU did */
			count_event(SW_EV_SRC_INSERT);
		all = src_v6.lookup(saddr);
		if (!all)
			return;
	}
	if (!source_bump(&all->cpu[cpu], len, syn, epoch, hot_pkts))
		return;
	s = hot_v6.lookup(saddr);
	if (s) {
		hot_bump(s, len, syn);
	} else {
		hot_bump(&fresh, len, syn);
		hot_v6.update(saddr, &fresh);
	}
}

/* L4 ports and SYN flag. Ports are returned in host byte order; 0 when the
 * protocol has none or its header is not in the packet. */
static __always_inline void (parse_l4)(struct hdr_cursor *nh, void *data_end,
				     int proto, __u16 *sport, __u16 *dport,
				     int *syn, __u8 *flags)
{
	struct tcphdr *tcp;
	struct udphdr *udp;

	if (proto == IPPROTO_TCP) {
		tcp = nh->pos;
		if ((void *)(tcp + 1) > data_end)
			goto unparsed;
		*sport = bpf_ntohs(tcp->source);
		*dport = bpf_ntohs(tcp->dest);
		*syn = tcp->syn && !tcp->ack;
		/* FIN SYN RST PSH ACK URG: the low 6 bits of byte 13 */
		*flags = ((__u8 *)tcp)[13] & 0x3f;
		return;
	}
	if (proto == IPPROTO_UDP) {
		udp = nh->pos;
		if ((void *)(udp + 1) > data_end)
			goto unparsed;
		*sport = bpf_ntohs(udp->source);
		*dport = bpf_ntohs(udp->dest);
		return;
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		/* type and code stand in the port slots of the histogram */
		struct icmphdr *icmp = nh->pos;

		if ((void *)icmp + 2 > data_end)
			goto unparsed;
		*sport = icmp->type;
		*dport = icmp->code;
		return;
	}
	return;
unparsed:
	count_event(SW_EV_L4_UNPARSED);
}

/* frag: enum sw_frag_class; dst: dst_bucket_v4/v6() of the destination. */
static __always_inline void (account_features)(__u32 hash, int proto,
					     __u16 sport, __u16 dport,
					     __u64 len, __u8 flags, int frag,
					     __u32 dst, __u32 cpu)
{
	__u32 cls = len / LEN_CLASS_WIDTH;
	__u32 base;

	if (cpu >= SW_NR_CPUS)
		return;
	base = cpu * FEAT_SLOTS;
	if (cls >= LEN_CLASSES)
		cls = LEN_CLASSES - 1;
	feature_bump(base, FEAT_OFF_SRC + ((hash >> 16) & (SRC_BUCKETS - 1)));
	feature_bump(base, FEAT_OFF_DPORT + dport);
	feature_bump(base, FEAT_OFF_SPORT + sport);
	feature_bump(base, FEAT_OFF_PROTO + (proto & 0xff));
	feature_bump(base, FEAT_OFF_LEN + cls);
	feature_bump(base, FEAT_OFF_FLAGS + (flags & (FLAG_BUCKETS - 1)));
	feature_bump(base, FEAT_OFF_FRAG + (frag & (FRAG_BUCKETS - 1)));
	feature_bump(base, FEAT_OFF_DST + (dst & (DST_BUCKETS - 1)));
}

/* --- signatures ------------------------------------------------------------- */

/* Token bucket of a rate-limited rule: each CPU passes up to
 * rate_pps / SW_NR_CPUS packets per second. Returns 1 to pass. */
static __always_inline int (sig_rate_ok)(__u32 slot, __u32 rate_pps, __u64 now)
{
	struct sw_admit_bucket *b = sig_rate.lookup(&slot);
	__u64 per_cpu = rate_pps / SW_NR_CPUS;
	__u64 elapsed, add;

	if (!b)
		return 0;
	if (per_cpu == 0)
		per_cpu = 1;
	elapsed = now - b->last_ns;
	if (elapsed >= 1000000000ULL / per_cpu) {
		/* A second or more refills the bucket. Below a second the
		 * product stays under 2^62 (per_cpu < 2^32); over a long idle
		 * spell elapsed * per_cpu would wrap round to a few tokens. */
		add = elapsed >= 1000000000ULL ? per_cpu :
		      elapsed * per_cpu / 1000000000ULL;
		b->tokens = b->tokens + add > per_cpu ? per_cpu : b->tokens + add;
		b->last_ns = now;
	}
	if (!b->tokens)
		return 0;
	b->tokens--;
	return 1;
}

/* Match the packet against the signature table. Returns XDP_DROP for a
 * drop rule or a rate-limited rule over its rate, CONTINUE otherwise. The
 * common case, no rules, costs one array read. frag is the packet's enum
 * sw_frag_class: a non-first fragment has no L4 header, so it is matched
 * by SW_SIG_FRAG rules only and never by ports or flags (shared.h); a
 * first fragment carries its ports and is matched like any packet. */
static __always_inline int (check_signatures)(int proto, __u16 sport,
					    __u16 dport, __u64 len,
					    __u8 flags, int frag)
{
	__u32 zero = 0, used, slot;
	struct sw_sig_meta *meta;
	struct sw_sig *r;
	struct sw_counter *hit;
	__u8 refuse;
	__u64 t;
	int i;

	meta = sig_meta.lookup(&zero);
	if (!meta || !meta->used)
		return CONTINUE;
	used = meta->used;
	/* The match bits that rule this packet out, one test per rule:
	 * SW_SIG_FRAG, or for a non-first fragment the L4 fields. */
	refuse = SW_SIG_FRAG ^ ((frag >> 1) * (SW_SIG_FRAG ^ (SW_SIG_DPORT |
				SW_SIG_SPORT | SW_SIG_FLAGS)));
	/* Read once, before the loop: read inside it, for matching rules
	 * only, it would cost no more time but half again the verifier's
	 * states (its budget is a million instructions). */
	t = clock_ns();
	/* A bounded loop, not unrolled: the induction variable stays in a
	 * register and the map key is a copy (a key on the stack that is
	 * also the loop counter defeats the verifier's loop detection). */
	for (i = 0; i < MAX_SIGNATURES; i++) {
		if (i >= used)
			break;
		slot = i;
		r = sigs.lookup(&slot);
		if (!r || !(r->match & SW_SIG_ACTIVE) || r->proto != proto ||
		    (r->match & refuse))
			continue;
		if ((r->match & SW_SIG_DPORT) && r->dport != dport)
			continue;
		if ((r->match & SW_SIG_SPORT) && r->sport != sport)
			continue;
		if ((r->match & SW_SIG_LEN) && (len < r->len_min || len >= r->len_max))
			continue;
		if ((r->match & SW_SIG_FLAGS) && r->tcp_flags != flags)
			continue;
		if (r->expires_ns && r->expires_ns <= t)
			continue;
		hit = sig_hits.lookup(&slot);
		if (hit) { /* per-CPU slot */
			hit->packets += 1;
			hit->bytes += len;
		}
		if (r->rate_pps && sig_rate_ok(slot, r->rate_pps, t))
			return CONTINUE;
		return XDP_DROP;
	}
	return CONTINUE;
}

/* --- SYN protection ---------------------------------------------------------- */

#include "synproxy.h"

/* The port's syn_ports slot when it is in force, else NULL. */
static __always_inline struct sw_synport *(syn_port)(__u16 dport)
{
	__u32 k = dport;
	struct sw_synport *sp = syn_ports.lookup(&k);

	if (!sp || !(sp->flags & SW_SYNPORT_ACTIVE))
		return NULL;
	if (sp->expires_ns && sp->expires_ns <= stamp_ns())
		return NULL;
	return sp;
}

/* A packet's particulars for SYN protection, noted in a scratch map
 * before the accounting: dport 0 when it is no candidate (not TCP, or
 * already judged). */
static __always_inline void (syn_note)(__u16 dport, __u64 l3_off, __u64 l4_off,
				     __u64 len, int v6, __u8 flags, int frag)
{
	__u32 zero = 0;
	struct sw_syn_args *b = syn_args.lookup(&zero);

	if (!b)
		return;
	b->dport = dport;
	b->l3_off = l3_off;
	b->l4_off = l4_off;
	b->len = len;
	b->v6 = v6;
	b->flags = flags;
	b->frag = frag;
}

/* After the accounting: judge a TCP segment noted by syn_note() when its
 * port is protected, count its reason and return its action; CONTINUE
 * otherwise. Everything comes back from the scratch map as values the
 * verifier knows nothing of, the same whichever way the parser and the
 * accounting took: what follows is walked once, not once for each of
 * the thousands of states that arrive here (the first version, with
 * them in registers, took the verifier from 104k instructions to 330k
 * before it did anything). */
static __always_inline int (synproxy_out)(struct xdp_md *ctx)
{
	__u32 zero = 0, reason;
	struct sw_syn_args *b = syn_args.lookup(&zero);
	struct sw_synport *sp;
	struct sw_config *cfg;
	struct sw_counter *c;
	int action;

	if (!b || !b->dport)
		return CONTINUE;
	sp = syn_port(b->dport);
	if (!sp)
		return CONTINUE;
	cfg = config.lookup(&zero);
	reason = SW_PASS_CLEAN;
	action = synproxy(ctx, b->l3_off, b->l4_off, b->v6, sp, b->flags, b->frag,
			  cfg && (cfg->flags & SW_CFG_MONITOR), &reason);
	c = stats.lookup(&reason);
	if (c) { /* per-CPU slot */
		c->packets += 1;
		c->bytes += b->len;
	}
	return action;
}

/* --- the program ----------------------------------------------------------- */

int xdp_seawall(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct hdr_cursor nh = { .pos = data };
	__u64 len = data_end - data;
	__u32 reason = SW_PASS_CLEAN;
	int action = XDP_PASS;
	struct iphdr *iph = NULL;
	struct ipv6hdr *ip6h = NULL;
	struct sw_config *cfg;
	__u16 sport = 0, dport = 0;
	__u8 flags = 0;
	int eth_type, proto, vlans;
	int l4_ok = 0, ext = 0, syn = 0, short_hdr = 0;
	int frag = SW_FRAG_NONE; /* enum sw_frag_class */
	__u32 zero = 0, hash, dst, saddr4 = 0, daddr4 = 0;
	struct in6_addr saddr6, daddr6;
	__u64 l3_off; /* the IP header's offset in the frame, past any VLAN tags */
	__u64 l4_off; /* the L4 header's offset in the frame */
	int v6;
	__s64 sbit = -1; /* the source's list-summary bit, -1: walk the tries */
	int verdict;

	eth_type = parse_ethhdr(&nh, data_end, &vlans);
	if (eth_type < 0) {
		reason = SW_PASS_MALFORMED;
		goto out;
	}
	if (vlans)
		count_event(SW_EV_VLAN);
	l3_off = nh.pos - data;

	if (eth_type == bpf_htons(ETH_P_IP)) {
		proto = parse_iphdr(&nh, data_end, &iph, &l4_ok, &frag, &ext,
				    &short_hdr);
		if (proto < 0) {
			reason = SW_PASS_MALFORMED;
			goto out;
		}
		if (ext)
			count_event(SW_EV_IP_OPTIONS);
	} else if (eth_type == bpf_htons(ETH_P_IPV6)) {
		proto = parse_ip6hdr(&nh, data_end, &ip6h, &l4_ok, &frag, &ext,
				     &short_hdr);
		if (proto < 0) {
			reason = SW_PASS_MALFORMED;
			goto out;
		}
		if (ext)
			count_event(SW_EV_IPV6_EXT);
	} else {
		reason = SW_PASS_NOT_IP;
		goto out;
	}

	/* From here on the addresses are values and the L4 header an offset:
	 * no packet pointer is live through the lists. The verifier walks
	 * what follows once for each state it arrives in, and each of the
	 * parser's ways through tags, options and extension chains left
	 * header pointers and a cursor of its own (each checked to another
	 * length, an offset known on one way and a range on the next): the
	 * lists, the signature scan and the accounting were walked anew for
	 * every one. Values merge. The offset goes through z, which is 0 for
	 * every frame (none is 2^63 bytes long) but which the verifier cannot
	 * know, so that the offsets known on some ways (54 for a plain IPv6
	 * packet) do not keep them apart either. The full program: 415k
	 * instructions walked -> 107k, the verifier's time 0.5 s -> 0.15 s
	 * (every bench/profile.h build under 145k; 834k at worst before). */
	l4_off = (__u64)(nh.pos - data) ^ (len >> 63);
	l3_off ^= len >> 63;
	v6 = !iph;
	if (iph) {
		saddr4 = iph->saddr;
		if (!short_hdr) /* cut short after the source address */
			daddr4 = iph->daddr;
	} else {
		__builtin_memcpy(&saddr6, &ip6h->saddr, sizeof(saddr6));
		if (!short_hdr)
			__builtin_memcpy(&daddr6, &ip6h->daddr, sizeof(daddr6));
	}

	/* 1. allowlist */
	verdict = v6 ? check_allow_v6(&saddr6, &sbit) : check_allow_v4(saddr4, &sbit);
	if (verdict >= 0) {
		reason = SW_PASS_ALLOW;
		goto out;
	}

	/* 2. blocklist, with in-kernel expiry */
	verdict = v6 ? check_block_v6(&saddr6, sbit) : check_block_v4(saddr4, sbit);
	cfg = config.lookup(&zero);
	if (verdict == XDP_DROP) {
		if (cfg && (cfg->flags & SW_CFG_MONITOR)) {
			reason = SW_MON_BLOCK; /* would drop; pass and count */
		} else {
			reason = SW_DROP_BLOCK;
			action = XDP_DROP;
			goto out;
		}
	}

	/* A fixed L3 header cut short after the source address: judged
	 * above, but there is nothing else to look at or account. */
	if (short_hdr) {
		if (reason == SW_PASS_CLEAN)
			reason = SW_PASS_MALFORMED;
		goto out;
	}

	/* What accounting needs of the addresses. (Taken as values above:
	 * before, past parse_l4() no packet pointer stayed live, so that the
	 * parser's states merged before the signature loop; the full program
	 * was at 443k instructions, and the worst build at 863k, before the
	 * fragment class and the destination histogram.) */
	if (v6) {
		hash = hash_v6((const __u32 *)&saddr6);
		dst = dst_bucket_v6((const __u32 *)&daddr6);
	} else {
		hash = hash_v4(saddr4);
		dst = dst_bucket_v4(daddr4);
	}

	/* L4 only now that the addresses have been judged */
	if (l4_ok && l4_off <= L4_OFF_MAX) { /* the bound: always true */
		nh.pos = data + l4_off;
		parse_l4(&nh, data_end, proto, &sport, &dport, &syn, &flags);
	} else {
		count_event(SW_EV_L4_UNPARSED);
		if (frag == SW_FRAG_LATER) /* never with l4_ok */
			count_event(SW_EV_FRAGMENT);
	}

	/* 3. signature rules (spoofed and reflected floods) */
	if (reason == SW_PASS_CLEAN &&
	    check_signatures(proto, sport, dport, len, flags, frag) == XDP_DROP) {
		if (cfg && (cfg->flags & SW_CFG_MONITOR)) {
			reason = SW_MON_SIG;
		} else {
			reason = SW_DROP_SIG;
			action = XDP_DROP;
			goto out;
		}
	}

	/* 4. accounting, each CPU in its own slots */
	syn_note(proto == IPPROTO_TCP && reason == SW_PASS_CLEAN ? dport : 0,
		 l3_off, l4_off, len, v6, flags, frag);
	{
		__u32 epoch = cfg ? cfg->epoch : 0;
		__u32 hot_pkts = cfg ? cfg->hot_pkts : 0;
		__u32 cpu = bpf_get_smp_processor_id();

		if (v6)
			account_v6(&saddr6, hash, len, syn, epoch, hot_pkts, cpu);
		else
			account_v4(saddr4, hash, len, syn, epoch, hot_pkts, cpu);
		account_features(hash, proto, sport, dport, len, flags, frag, dst, cpu);
	}

	/* 5. SYN protection of the port, after the accounting: a SYN flood
	 * it answers stays in view of the daemon, which keeps it on while
	 * the flood lasts. */
	verdict = synproxy_out(ctx);
	if (verdict >= 0)
		return verdict;

out:
	{
		struct sw_counter *c = stats.lookup(&reason);

		if (c) { /* per-CPU slot: plain adds */
			c->packets += 1;
			c->bytes += len;
		}
	}
	return action;
}

/* bcc adds the GPL licence section itself (BPF_LICENSE defaults to GPL). */
