/* SPDX-License-Identifier: GPL-2.0 */
/* The floor of `seawall bench`: the cheapest XDP program there is, compiled
 * by bcc exactly as seawall.c is (control/datapath/loader.py). Every per-packet
 * figure is also given as a ratio to this one. */
#include <uapi/linux/bpf.h>

int xdp_floor(struct xdp_md *ctx)
{
	return XDP_DROP;
}
