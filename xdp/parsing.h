/* SPDX-License-Identifier: GPL-2.0 */
/* Header parsing with a cursor, after xdp-tutorial's parsing_helpers.h.
 * Every helper checks its header against data_end before touching it and
 * returns the next protocol (host byte order unless said otherwise), or -1
 * when the packet is too short for the header. */
#ifndef SEAWALL_PARSING_H
#define SEAWALL_PARSING_H

#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/in.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>

#include "tunables.h"
#include "shared.h"

struct hdr_cursor {
	void *pos;
};

struct sw_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

static __always_inline int proto_is_vlan(__u16 h_proto)
{
	return h_proto == bpf_htons(ETH_P_8021Q) ||
	       h_proto == bpf_htons(ETH_P_8021AD);
}

/* Ethernet plus up to VLAN_MAX_DEPTH 802.1Q/802.1ad tags.
 * Returns the inner EtherType in network byte order, or -1.
 * *vlans is set to the number of tags walked. A frame with more tags than
 * VLAN_MAX_DEPTH returns the last tag's EtherType (a VLAN type), which the
 * caller treats as "not IP". */
static __always_inline int parse_ethhdr(struct hdr_cursor *nh, void *data_end,
					int *vlans)
{
	struct ethhdr *eth = nh->pos;
	struct sw_vlan_hdr *vlh;
	__u16 h_proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return -1;
	nh->pos = eth + 1;
	h_proto = eth->h_proto;
	*vlans = 0;

#pragma unroll
	for (i = 0; i < VLAN_MAX_DEPTH; i++) {
		if (!proto_is_vlan(h_proto))
			break;
		vlh = nh->pos;
		if ((void *)(vlh + 1) > data_end)
			return -1;
		h_proto = vlh->encap_proto;
		nh->pos = vlh + 1;
		*vlans = i + 1;
	}
	return h_proto;
}

/* IPv4 header. Returns the IP protocol, or -1 when the packet ends before
 * the end of the source address. *short_hdr is 1 when the packet ends
 * inside the fixed 20-byte header after the source address: the protocol
 * and source address are valid, nothing after them is. *l4_ok is 0 when no
 * L4 header follows that can be trusted: a short header, a bogus IHL (< 5),
 * options running past the packet, or a non-first fragment. *frag is the
 * packet's enum sw_frag_class (SW_FRAG_NONE until the header is whole). */
static __always_inline int parse_iphdr(struct hdr_cursor *nh, void *data_end,
				       struct iphdr **iphdr, int *l4_ok,
				       int *frag, int *opts, int *short_hdr)
{
	struct iphdr *iph = nh->pos;
	int hdrsize;

	if ((void *)iph + offsetof(struct iphdr, daddr) > data_end)
		return -1;
	*iphdr = iph;
	*l4_ok = 0;
	*frag = 0;
	*opts = 0;
	*short_hdr = 0;
	if ((void *)(iph + 1) > data_end) {
		*short_hdr = 1;
		return iph->protocol;
	}
	*l4_ok = 1;

	hdrsize = iph->ihl * 4;
	if (hdrsize < (int)sizeof(*iph)) {
		*l4_ok = 0;
		return iph->protocol;
	}
	*opts = hdrsize > (int)sizeof(*iph);
	if (nh->pos + hdrsize > data_end) {
		*l4_ok = 0;
		return iph->protocol;
	}
	nh->pos += hdrsize;
	/* Fragment offset (13 bits, network order in frag_off) non-zero: no
	 * L4 header here. The first fragment (offset 0, MF set) carries it. */
	if (iph->frag_off & bpf_htons(0x1fff)) {
		*l4_ok = 0;
		*frag = SW_FRAG_LATER;
	} else {
		/* SW_FRAG_FIRST (1) when MF is set, else SW_FRAG_NONE (0).
		 * Without a branch: a class known on each path would double
		 * the states the verifier walks through the signature loop. */
		*frag = (bpf_ntohs(iph->frag_off) >> 13) & 1;
	}
	return iph->protocol;
}

struct sw_ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct sw_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3 | flags */
	__be32 identification;
};

/* IPv6 header and up to IPV6_EXT_MAX_CHAIN extension headers.
 * Returns the upper-layer protocol, or -1 when the packet ends before the
 * end of the source address. *short_hdr is 1 when the packet ends inside
 * the 40-byte fixed header after the source address: the next-header field
 * and source address are valid, nothing after them is. *l4_ok is 0 when the
 * header is short, the chain was truncated, longer than IPV6_EXT_MAX_CHAIN
 * headers, ended in a header with no L4 (ESP, No Next Header), or this is a
 * non-first fragment. *frag is the packet's enum sw_frag_class, from the
 * fragment headers walked (an atomic fragment, offset 0 and M clear, is
 * SW_FRAG_NONE). */
static __always_inline int parse_ip6hdr(struct hdr_cursor *nh, void *data_end,
					struct ipv6hdr **ip6hdr, int *l4_ok,
					int *frag, int *exts, int *short_hdr)
{
	struct ipv6hdr *ip6h = nh->pos;
	struct sw_ipv6_opt_hdr *opt;
	struct sw_ipv6_frag_hdr *fh;
	int nexthdr;
	int i;

	if ((void *)ip6h + offsetof(struct ipv6hdr, daddr) > data_end)
		return -1;
	*ip6hdr = ip6h;
	*l4_ok = 0;
	*frag = 0;
	*exts = 0;
	*short_hdr = 0;
	if ((void *)(ip6h + 1) > data_end) {
		*short_hdr = 1;
		return ip6h->nexthdr;
	}
	nh->pos = ip6h + 1;
	nexthdr = ip6h->nexthdr;

#pragma unroll
	for (i = 0; i < IPV6_EXT_MAX_CHAIN; i++) {
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS:
			opt = nh->pos;
			if ((void *)(opt + 1) > data_end)
				return nexthdr;
			*exts = 1;
			nexthdr = opt->nexthdr;
			/* hdrlen in 8-byte units, not counting the first 8 */
			nh->pos += (opt->hdrlen + 1) * 8;
			break;
		case IPPROTO_AH:
			opt = nh->pos;
			if ((void *)(opt + 1) > data_end)
				return nexthdr;
			*exts = 1;
			nexthdr = opt->nexthdr;
			/* AH payload length in 4-byte units, minus 2 */
			nh->pos += (opt->hdrlen + 2) * 4;
			break;
		case IPPROTO_FRAGMENT:
			fh = nh->pos;
			if ((void *)(fh + 1) > data_end)
				return nexthdr;
			*exts = 1;
			nexthdr = fh->nexthdr;
			nh->pos = fh + 1;
			if (fh->frag_off & bpf_htons(0xfff8)) {
				*frag = SW_FRAG_LATER;
				return nexthdr; /* non-first fragment: no L4 */
			}
			/* M set: SW_FRAG_FIRST (1); without a branch, as above */
			*frag |= bpf_ntohs(fh->frag_off) & 1;
			break;
		default:
			/* ESP (50) and No Next Header (59) fall here with no
			 * parsable L4 header; the caller checks the protocol. */
			*l4_ok = nexthdr != 50 && nexthdr != 59;
			return nexthdr;
		}
	}
	/* IPV6_EXT_MAX_CHAIN headers walked. The L4 header follows when the
	 * last one pointed at an upper-layer protocol (a chain of exactly
	 * IPV6_EXT_MAX_CHAIN headers); after a longer chain, no L4. */
	*l4_ok = nexthdr != IPPROTO_HOPOPTS && nexthdr != IPPROTO_ROUTING &&
		 nexthdr != IPPROTO_DSTOPTS && nexthdr != IPPROTO_AH &&
		 nexthdr != IPPROTO_FRAGMENT && nexthdr != 50 && nexthdr != 59;
	return nexthdr;
}

#endif /* SEAWALL_PARSING_H */
