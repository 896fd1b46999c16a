/* SPDX-License-Identifier: GPL-2.0 */
/* `seawall bench --profile`: xdp/seawall.c with parts of its pipeline
 * replaced by stubs, to time the program without a part and attribute the
 * difference to that part.
 *
 * The bench compiles the unmodified seawall.c with this header
 * force-included ahead of it (clang's -include) and -DPROFILE_SKIP=<mask>.
 * Each macro below stands in for the helper of its name: seawall.c defines
 * every helper's name in parentheses, which a function-like macro never
 * expands, so only the calls are replaced. With no bit set nothing is
 * replaced. A build with any bit set is wrong on purpose (it skips a
 * check) and only ever runs under BPF_PROG_TEST_RUN in the bench's private
 * maps. control/tools/bench/datapath.py names the bits (PROFILE_PARTS). */
#ifndef SEAWALL_BENCH_PROFILE_H
#define SEAWALL_BENCH_PROFILE_H

#ifndef PROFILE_SKIP
#error "PROFILE_SKIP must be defined: the mask of the parts to compile out"
#endif

#define SKIP_ALLOW (1U << 0)      /* allowlist lookups: always a miss */
#define SKIP_BLOCK (1U << 1)      /* blocklist lookups: always a miss */
#define SKIP_CLOCK (1U << 2)      /* the boot clock: a constant */
#define SKIP_SOURCES (1U << 3)    /* per-source LRU and its doorkeeper */
#define SKIP_FEATURES (1U << 4)   /* the feature histograms */
#define SKIP_SIGNATURES (1U << 5) /* the signature table */
#define SKIP_EVENTS (1U << 6)     /* event counters (not the reason counters) */

#if PROFILE_SKIP & SKIP_ALLOW
/* the source's summary bit is still computed: the blocklist uses it */
#define check_allow_v4(saddr, sbit) (*(sbit) = summary_bit_v4(saddr), CONTINUE)
#define check_allow_v6(saddr, sbit) (*(sbit) = summary_bit_v6(saddr), CONTINUE)
#endif /* PROFILE_SKIP & SKIP_ALLOW */

#if PROFILE_SKIP & SKIP_BLOCK
#define check_block_v4(saddr, sbit) CONTINUE
#define check_block_v6(saddr, sbit) CONTINUE
#endif /* PROFILE_SKIP & SKIP_BLOCK */

#if PROFILE_SKIP & SKIP_CLOCK
#define clock_ns() 1ULL
#endif /* PROFILE_SKIP & SKIP_CLOCK */

#if PROFILE_SKIP & SKIP_SOURCES
#define account_v4(saddr, hash, len, syn, epoch, hot_pkts, cpu) do { } while (0)
#define account_v6(saddr, hash, len, syn, epoch, hot_pkts, cpu) do { } while (0)
#endif /* PROFILE_SKIP & SKIP_SOURCES */

#if PROFILE_SKIP & SKIP_FEATURES
#define feature_bump(base, slot) do { } while (0)
#endif /* PROFILE_SKIP & SKIP_FEATURES */

#if PROFILE_SKIP & SKIP_SIGNATURES
#define check_signatures(proto, sport, dport, len, flags, frag) CONTINUE
#endif /* PROFILE_SKIP & SKIP_SIGNATURES */

#if PROFILE_SKIP & SKIP_EVENTS
#define count_event(ev) do { } while (0)
#endif /* PROFILE_SKIP & SKIP_EVENTS */

#endif /* SEAWALL_BENCH_PROFILE_H */
