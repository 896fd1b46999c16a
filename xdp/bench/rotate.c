/* SPDX-License-Identifier: GPL-2.0 */
/* The spoofed-source mix of `seawall bench`.
 *
 * BPF_PROG_TEST_RUN runs a program `repeat` times on one frame, and an XDP
 * test run keeps what the program wrote into the frame from one repeat to
 * the next (control/tools/bench/datapath.py checks this after every run). This program
 * replaces the frame's IPv4 source address with the next value of a
 * full-period linear congruential sequence, then tail-calls the program
 * under test (slot 0 of bench_next): seawall, xdp-filter or the floor,
 * each unmodified. Each of 2^32 consecutive repeats so carries a source
 * never seen before, as in a random-spoofed flood. The prologue and the
 * tail call are the same for all three, and the floor's figure includes
 * them. */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>

/* Numerical Recipes' LCG: a = 1 (mod 4) and c odd give period 2^32
 * (Hull-Dobell). The address is stepped as a host-order integer, so its
 * first octets, the ones an LPM trie walks first, are the well-mixed high
 * bits. control/tools/bench/datapath.py mirrors both constants. */
#define BENCH_LCG_A 1664525U
#define BENCH_LCG_C 1013904223U

BPF_PROG_ARRAY(bench_next, 1);

int xdp_rotate(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	struct iphdr *iph = data + sizeof(*eth);

	if ((void *)(iph + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP))
		iph->saddr = bpf_htonl(bpf_ntohl(iph->saddr) * BENCH_LCG_A +
				       BENCH_LCG_C);
	bench_next.call(ctx, 0);
	return XDP_ABORTED; /* the slot was empty: the bench reports it */
}
