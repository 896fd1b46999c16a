/* SPDX-License-Identifier: GPL-2.0 */
/* Every type of the kernel/user ABI in one object's BTF, for
 * tests/bpf/test_abi.py, as Cilium's bpf_alignchecker.c does for its Go
 * mirror. The program's own BTF holds its structs (through its maps'
 * keys and values) but neither its enums nor its tunables: clang leaves
 * out a type nothing is declared with, and a #define never reaches BTF.
 * This probe declares one of each in a map value. It is compiled by the
 * product's loader with the flags xdp/seawall.c gets, from the same
 * headers (a test force-includes an edited copy of shared.h instead). */
#include <uapi/linux/bpf.h>

#include "tunables.h"
#include "shared.h"

/* tunables.h's defaults, as enumerators */
enum sw_tunables {
	T_VLAN_MAX_DEPTH = VLAN_MAX_DEPTH,
	T_IPV6_EXT_MAX_CHAIN = IPV6_EXT_MAX_CHAIN,
	T_MAX_ALLOW_ENTRIES = MAX_ALLOW_ENTRIES,
	T_MAX_BLOCK_ENTRIES = MAX_BLOCK_ENTRIES,
	T_LIST_SUMMARY_LOG2 = LIST_SUMMARY_LOG2,
	T_BLOCK_EXPIRED_HOPS = BLOCK_EXPIRED_HOPS,
	T_MAX_SOURCES_V4 = MAX_SOURCES_V4,
	T_MAX_SOURCES_V6 = MAX_SOURCES_V6,
	T_HOT_SOURCES_V4 = HOT_SOURCES_V4,
	T_HOT_SOURCES_V6 = HOT_SOURCES_V6,
	T_ADMIT_SLOTS = ADMIT_SLOTS,
	T_ADMIT_RATE = ADMIT_RATE,
	T_ADMIT_BURST = ADMIT_BURST,
	T_MAX_SIGNATURES = MAX_SIGNATURES,
	T_SRC_BUCKETS = SRC_BUCKETS,
	T_PORT_BUCKETS = PORT_BUCKETS,
	T_PROTO_BUCKETS = PROTO_BUCKETS,
	T_LEN_CLASSES = LEN_CLASSES,
	T_FLAG_BUCKETS = FLAG_BUCKETS,
	T_FRAG_BUCKETS = FRAG_BUCKETS,
	T_DST_BUCKETS = DST_BUCKETS,
	T_LEN_CLASS_WIDTH = LEN_CLASS_WIDTH,
	T_LAST_HIT_GRANULARITY_NS = LAST_HIT_GRANULARITY_NS,
};

struct sw_abi {
	enum xdp_action xdp_action;
	enum sw_reason reason;
	enum sw_event event;
	enum sw_feature feature;
	enum sw_cfg_flags cfg_flags;
	enum sw_block_flags block_flags;
	enum sw_sig_match sig_match;
	enum sw_frag_class frag_class;
	enum sw_lists_flags lists_flags;
	enum sw_synport_flags synport_flags;
	enum sw_tunables tunables;
	struct sw_counter counter;
	struct sw_config config;
	struct sw_lpm_v4 lpm_v4;
	struct sw_lpm_v6 lpm_v6;
	struct sw_block block;
	struct sw_allow allow;
	struct sw_source source;
	struct sw_sig sig;
	struct sw_sig_meta sig_meta;
	struct sw_list_meta list_meta;
	struct sw_admit_bucket admit_bucket;
	struct sw_stamp stamp;
	struct sw_synport synport;
	struct sw_syn_args syn_args;
};

BPF_ARRAY(sw_abi, struct sw_abi, 1);

int sw_abi_probe(struct xdp_md *ctx)
{
	return XDP_PASS;
}
