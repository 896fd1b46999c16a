/* SPDX-License-Identifier: GPL-2.0 */
/* SYN protection of a served port: SYN cookies at the NIC, after the
 * kernel's xdp_synproxy selftest, in front of netfilter's SYNPROXY.
 *
 * For a port whose syn_ports slot is in force:
 *   - a SYN is answered here: the frame becomes a SYN-ACK whose sequence
 *     number is a syncookie (bpf_tcp_raw_gen_syncookie_ipv4/6, the
 *     kernel's own secret and algorithm) and is sent back out (XDP_TX).
 *     With the client's timestamp option, its window scale, SACK and ECN
 *     are kept in the low bits of our timestamp, as SYNPROXY encodes and
 *     later decodes them (synproxy_init/check_timestamp_cookie). Window 0,
 *     as SYNPROXY's own SYN-ACK: it opens the window once the server has
 *     answered.
 *   - any other segment passes when the host holds a socket for it
 *     (established, closing, or a request SYNPROXY is opening), or when
 *     its ACK carries a valid cookie: netfilter's SYNPROXY then checks it
 *     again and opens the connection with the listening socket. Else it
 *     is dropped: spoofed ACKs, RSTs and FINs never reach the stack.
 * No checksum is checked: on veth and with checksum offload a sender's
 * frames carry partial ones, and a SYN with a bad one costs one SYN-ACK.
 *
 * No map is named here: bcc rewrites map calls in the main source only,
 * so seawall.c looks the port up (syn_port()) and hands its slot in. */
#ifndef SEAWALL_SYNPROXY_H
#define SEAWALL_SYNPROXY_H

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10
#define TH_ECE 0x40
#define TH_CWR 0x80

#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_MSS 2
#define TCPOPT_WINDOW 3
#define TCPOPT_SACK_PERM 4
#define TCPOPT_TIMESTAMP 8

/* Our timestamp's low bits (TSBITS), as SYNPROXY reads them back. */
#define TS_OPT_WSCALE_NONE 0xf
#define TS_OPT_SACK (1 << 4)
#define TS_OPT_ECN (1 << 5)
#define TSMASK 0x3f

#define L3_OFF_MAX 64  /* Ethernet and VLAN_MAX_DEPTH tags end well before */
#define SYNACK_TTL 64

/* A SYN's headers as the helpers and the option parser read them: the
 * TCP header with its options copied out of the frame (wherever it sits
 * and however long the frame is), so that none of it needs a packet
 * pointer whose bound depends on the data offset. */
struct sw_syn_in {
	struct tcphdr th;
	__u8 opt[72]; /* 40 used; read at an offset masked to 63, 4 bytes at most */
};

/* The SYN-ACK, built here before it goes into the frame: the L3 header
 * (20 or 40 bytes), then TCP with at most 20 bytes of options. */
struct sw_synack {
	__u8 b[40 + 20 + 20];
};

/* An option byte at offset off of the copied options. The mask bounds
 * the read for the verifier; the empty asm keeps clang from dropping it
 * (clang knows off < 40, the verifier does not follow how). */
static __always_inline __u8 (opt_byte)(const struct sw_syn_in *in, __u32 off)
{
	asm volatile("" : "+r"(off));
	return in->opt[off & 63];
}

static __always_inline __u32 (csum_add_words)(const __u16 *w, int n, __u32 sum)
{
	int i;

#pragma unroll
	for (i = 0; i < n; i++)
		sum += w[i];
	return sum;
}

static __always_inline __u16 (csum_fold32)(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* 0 or 1, computed without a branch, and hidden from clang as such: a
 * value it knows is boolean it turns back into a select, which the BPF
 * backend lowers to a branch. Operands below 2^63. */
#define SW_BOOL(x) ({ __u64 __b = (x); asm volatile("" : "+r"(__b)); __b; })
#define SW_EQ(a, b) SW_BOOL(((((__u64)(a)) ^ ((__u64)(b))) - 1) >> 63)
#define SW_LT(a, b) SW_BOOL((((__u64)(a)) - ((__u64)(b))) >> 63)

/* The client's window scale (or TS_OPT_WSCALE_NONE), SACK-permitted and
 * timestamp value (network order) from a SYN's options. Returns 1 when a
 * timestamp option was found. Branch-free but for the loop's own test:
 * the verifier walks each iteration once, where a branch per option kind
 * made it walk every combination of kinds (past its million). */
static __always_inline int (syn_options)(const struct sw_syn_in *in, __u32 optlen,
				       __u32 *wscale, int *sack, __u32 *tsval)
{
	__u64 off = 0, kind, len, nop, eol, take, m, ts = 0, sk = 0;
	__u64 ws = TS_OPT_WSCALE_NONE, tv = 0, v;
	int i;

	for (i = 0; i < 20; i++) { /* 40 bytes hold at most 20 options */
		if (off >= optlen)
			break;
		kind = opt_byte(in, off);
		len = opt_byte(in, off + 1);
		nop = SW_EQ(kind, TCPOPT_NOP);
		eol = SW_EQ(kind, TCPOPT_EOL);
		take = (1 - nop) * (1 - eol);
		m = take * SW_EQ(kind, TCPOPT_WINDOW) * SW_EQ(len, 3);
		v = opt_byte(in, off + 2);
		v = v < 14 ? v : 14;
		ws += m * (v - ws);
		sk |= take * SW_EQ(kind, TCPOPT_SACK_PERM) * SW_EQ(len, 2);
		m = take * SW_EQ(kind, TCPOPT_TIMESTAMP) * SW_EQ(len, 10);
		v = (__u64)opt_byte(in, off + 2) | (__u64)opt_byte(in, off + 3) << 8 |
		    (__u64)opt_byte(in, off + 4) << 16 | (__u64)opt_byte(in, off + 5) << 24;
		tv += m * (v - tv);
		ts |= m;
		/* NOP: one byte; EOL or a length below 2: past the end */
		off += nop + eol * 40 + take * (len + SW_LT(len, 2) * 40);
	}
	*wscale = ws;
	*sack = sk;
	*tsval = tv;
	return ts;
}

/* The TCP part of the SYN-ACK at t (zeroed by the caller); returns its
 * length: 24, 36 or 40 bytes. */
static __always_inline __u32 (synack_tcp)(__u8 *t, const struct tcphdr *syn,
					__u32 cookie, __u16 mss, __u32 wscale,
					int sack, int ts, __u32 tsval,
					__u32 our_wscale, int ecn)
{
	struct tcphdr *th = (struct tcphdr *)t;
	__u32 *o = (__u32 *)(t + 20);
	__u32 words = 1, ours;

	th->source = syn->dest;
	th->dest = syn->source;
	th->seq = bpf_htonl(cookie);
	th->ack_seq = bpf_htonl(bpf_ntohl(syn->seq) + 1);
	o[0] = bpf_htonl((TCPOPT_MSS << 24) | (4 << 16) | mss);
	if (ts) {
		ours = ((__u32)(bpf_ktime_get_ns() / 1000000) & ~TSMASK) | (wscale & 0xf) |
		       (sack ? TS_OPT_SACK : 0) | (ecn ? TS_OPT_ECN : 0);
		o[1] = bpf_htonl(sack ? (TCPOPT_SACK_PERM << 24) | (2 << 16) | (TCPOPT_TIMESTAMP << 8) | 10 :
				 (TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) | (TCPOPT_TIMESTAMP << 8) | 10);
		o[2] = bpf_htonl(ours);
		o[3] = tsval; /* the client's, echoed */
		words = 4;
		if (wscale != TS_OPT_WSCALE_NONE) {
			o[4] = bpf_htonl((TCPOPT_NOP << 24) | (TCPOPT_WINDOW << 16) | (3 << 8) |
					 (our_wscale & 0xf));
			words = 5;
		}
	}
	/* data offset and flags: doff in the top 4 bits of byte 12 */
	t[12] = (5 + words) << 4;
	t[13] = TH_SYN | TH_ACK | (ts && ecn ? TH_ECE : 0);
	th->window = 0;
	return 20 + words * 4;
}

/* Answer a SYN to a protected port with a cookie SYN-ACK, in place.
 * Returns XDP_TX, or XDP_DROP for a SYN no answer can be made for. */
static __always_inline int (synproxy_syn)(struct xdp_md *ctx, __u64 l3_off,
					__u64 l4_off, int v6,
					const struct sw_synport *sp)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct sw_syn_in in = {};
	struct sw_synack out = {};
	struct iphdr *iph;
	struct ipv6hdr *ip6h;
	struct ethhdr *eth = data;
	__u8 mac[ETH_ALEN];
	__u32 tcp_len, optlen, l3_len, out_tcp, wscale = TS_OPT_WSCALE_NONE, tsval = 0;
	__u32 mtu = 0, sum, len;
	__u16 mss;
	__s64 cookie;
	int sack = 0, ts, ecn;
	__u8 flags_in;

	if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX)
		return XDP_DROP;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (bpf_xdp_load_bytes(ctx, l4_off, &in.th, sizeof(in.th)))
		return XDP_DROP;
	tcp_len = in.th.doff * 4;
	if (tcp_len < sizeof(in.th))
		return XDP_DROP;
	optlen = tcp_len - sizeof(in.th);
	if (optlen > 40)
		return XDP_DROP;
	if (optlen && bpf_xdp_load_bytes(ctx, l4_off + sizeof(in.th), in.opt, optlen))
		return XDP_DROP; /* options cut short */
	flags_in = ((__u8 *)&in.th)[13];
	ecn = (flags_in & (TH_ECE | TH_CWR)) == (TH_ECE | TH_CWR);

	/* The cookie, from the SYN as it came: addresses, ports, sequence
	 * number and MSS option. */
	if (v6) {
		ip6h = data + l3_off;
		if ((void *)(ip6h + 1) > data_end)
			return XDP_DROP;
		cookie = bpf_tcp_raw_gen_syncookie_ipv6(ip6h, &in.th, tcp_len);
	} else {
		iph = data + l3_off;
		if ((void *)(iph + 1) > data_end)
			return XDP_DROP;
		cookie = bpf_tcp_raw_gen_syncookie_ipv4(iph, &in.th, tcp_len);
	}
	if (cookie < 0)
		return XDP_DROP;

	ts = syn_options(&in, optlen, &wscale, &sack, &tsval);

	/* The MSS we advertise: the slot's, lowered to this interface's MTU. */
	mss = v6 ? sp->mss6 : sp->mss4;
	if (bpf_check_mtu(ctx, 0, &mtu, 0, 0) >= 0 && mtu > 100) {
		__u32 cap = mtu - (v6 ? 60 : 40);

		if (cap < mss)
			mss = cap;
	}

	/* Addresses swapped into the new L3 header; the TCP part after it. */
	if (v6) {
		struct ipv6hdr *o6 = (struct ipv6hdr *)out.b;

		l3_len = sizeof(struct ipv6hdr);
		out_tcp = synack_tcp(out.b + 40, &in.th, (__u32)cookie, mss, wscale, sack,
				     ts, tsval, sp->wscale, ecn);
		*(__be32 *)o6 = bpf_htonl(0x60000000);
		o6->payload_len = bpf_htons(out_tcp);
		o6->nexthdr = IPPROTO_TCP;
		o6->hop_limit = SYNACK_TTL;
		__builtin_memcpy(&o6->saddr, &ip6h->daddr, 16);
		__builtin_memcpy(&o6->daddr, &ip6h->saddr, 16);
		/* pseudo-header: addresses, length, protocol */
		sum = csum_add_words((__u16 *)&o6->saddr, 16, 0);
		sum += bpf_htons(out_tcp) + bpf_htons(IPPROTO_TCP);
		sum = csum_add_words((__u16 *)(out.b + 40), 20, sum);
		((struct tcphdr *)(out.b + 40))->check = csum_fold32(sum);
	} else {
		struct iphdr *o4 = (struct iphdr *)out.b;

		l3_len = sizeof(struct iphdr);
		out_tcp = synack_tcp(out.b + 20, &in.th, (__u32)cookie, mss, wscale, sack,
				     ts, tsval, sp->wscale, ecn);
		o4->version = 4;
		o4->ihl = 5;
		o4->tot_len = bpf_htons(20 + out_tcp);
		o4->frag_off = bpf_htons(0x4000); /* DF */
		o4->ttl = SYNACK_TTL;
		o4->protocol = IPPROTO_TCP;
		o4->saddr = iph->daddr;
		o4->daddr = iph->saddr;
		o4->check = csum_fold32(csum_add_words((__u16 *)o4, 10, 0));
		sum = csum_add_words((__u16 *)&o4->saddr, 4, 0);
		sum += bpf_htons(out_tcp) + bpf_htons(IPPROTO_TCP);
		sum = csum_add_words((__u16 *)(out.b + 20), 20, sum);
		((struct tcphdr *)(out.b + 20))->check = csum_fold32(sum);
	}

	/* Back the way it came: MAC addresses swapped (VLAN tags kept), the
	 * frame cut (or grown) to the SYN-ACK, its headers written over. */
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	len = l3_len + out_tcp;
	if (len > sizeof(out.b))
		return XDP_DROP; /* cannot happen: 40 + 40 at most */
	if (bpf_xdp_adjust_tail(ctx, (int)(l3_off + len) - (int)(data_end - data)))
		return XDP_DROP;
	if (bpf_xdp_store_bytes(ctx, l3_off, out.b, len))
		return XDP_DROP;
	return XDP_TX;
}

/* A segment other than a SYN to a protected port: SW_PASS_SOCKET,
 * SW_PASS_SYNCOOKIE or SW_DROP_SYNPROXY. */
static __always_inline __u32 (synproxy_seg)(struct xdp_md *ctx, __u64 l3_off,
					  __u64 l4_off, int v6, __u8 flags)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_sock_tuple tup = {};
	struct bpf_sock *sk;
	struct tcphdr *th;
	struct iphdr *iph;
	struct ipv6hdr *ip6h;
	__u32 size, state;
	long err;

	if (l3_off > L3_OFF_MAX || l4_off > L4_OFF_MAX)
		return SW_DROP_SYNPROXY;
	th = data + l4_off;
	if ((void *)(th + 1) > data_end)
		return SW_DROP_SYNPROXY;
	if (v6) {
		ip6h = data + l3_off;
		if ((void *)(ip6h + 1) > data_end)
			return SW_DROP_SYNPROXY;
		__builtin_memcpy(tup.ipv6.saddr, &ip6h->saddr, 16);
		__builtin_memcpy(tup.ipv6.daddr, &ip6h->daddr, 16);
		tup.ipv6.sport = th->source;
		tup.ipv6.dport = th->dest;
		size = sizeof(tup.ipv6);
	} else {
		iph = data + l3_off;
		if ((void *)(iph + 1) > data_end)
			return SW_DROP_SYNPROXY;
		tup.ipv4.saddr = iph->saddr;
		tup.ipv4.daddr = iph->daddr;
		tup.ipv4.sport = th->source;
		tup.ipv4.dport = th->dest;
		size = sizeof(tup.ipv4);
	}
	sk = bpf_skc_lookup_tcp(ctx, &tup, size, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		state = sk->state;
		bpf_sk_release(sk);
		if (state != BPF_TCP_LISTEN)
			return SW_PASS_SOCKET;
	}
	if ((flags & (TH_ACK | TH_RST | TH_SYN)) != TH_ACK)
		return SW_DROP_SYNPROXY;
	if (v6)
		err = bpf_tcp_raw_check_syncookie_ipv6(ip6h, th);
	else
		err = bpf_tcp_raw_check_syncookie_ipv4(iph, th);
	return err ? SW_DROP_SYNPROXY : SW_PASS_SYNCOOKIE;
}

/* A TCP segment to a port whose syn_ports slot sp is in force. Returns
 * the action and sets *reason. In monitor mode nothing is answered or
 * dropped: what would be is counted as SW_MON_SYNPROXY. */
static __always_inline int (synproxy)(struct xdp_md *ctx, __u64 l3_off,
				    __u64 l4_off, int v6,
				    const struct sw_synport *sp, __u8 flags,
				    int frag, int monitor, __u32 *reason)
{
	__u32 r;

	if (flags & TH_SYN) {
		if (monitor) {
			*reason = SW_MON_SYNPROXY;
			return XDP_PASS;
		}
		/* only a plain SYN, whole (a first fragment is not) */
		if ((flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN)) != TH_SYN || frag != SW_FRAG_NONE) {
			*reason = SW_DROP_SYNPROXY;
			return XDP_DROP;
		}
		if (synproxy_syn(ctx, l3_off, l4_off, v6, sp) == XDP_TX) {
			*reason = SW_TX_SYNCOOKIE;
			return XDP_TX;
		}
		*reason = SW_DROP_SYNPROXY;
		return XDP_DROP;
	}
	r = synproxy_seg(ctx, l3_off, l4_off, v6, flags);
	if (r == SW_DROP_SYNPROXY && monitor)
		r = SW_MON_SYNPROXY;
	*reason = r;
	return r == SW_DROP_SYNPROXY ? XDP_DROP : XDP_PASS;
}

#endif /* SEAWALL_SYNPROXY_H */
