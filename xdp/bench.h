/* SPDX-License-Identifier: GPL-2.0 */
/* Profiling switches of `seawall bench --profile`, never set otherwise.
 *
 * SW_BENCH_SKIP is a bit mask of pipeline parts to compile out, so that the
 * bench can time the program with one part missing and attribute the
 * difference to that part. Each part's helper starts with
 * `if (bench_skips(SW_SKIP_X)) return ...;`: with the default mask of 0 the
 * condition is a compile-time 0 and the line vanishes from the object, so
 * the production program is unchanged. A build with any bit set is wrong
 * on purpose (it skips a check) and only ever runs under BPF_PROG_TEST_RUN
 * in the bench's private maps. */
#ifndef SEAWALL_BENCH_H
#define SEAWALL_BENCH_H

#ifndef SW_BENCH_SKIP
#define SW_BENCH_SKIP 0
#endif

#define SW_SKIP_ALLOW (1U << 0)      /* allowlist lookups: always a miss */
#define SW_SKIP_BLOCK (1U << 1)      /* blocklist lookups: always a miss */
#define SW_SKIP_CLOCK (1U << 2)      /* the boot clock: a constant */
#define SW_SKIP_SOURCES (1U << 3)    /* per-source LRU and its doorkeeper */
#define SW_SKIP_FEATURES (1U << 4)   /* the feature histograms */
#define SW_SKIP_SIGNATURES (1U << 5) /* the signature table */
#define SW_SKIP_EVENTS (1U << 6)     /* event counters (not the reason counters) */

#define bench_skips(part) ((SW_BENCH_SKIP & (part)) != 0)

#endif /* SEAWALL_BENCH_H */
