/* baseline_walk.c - a minimal C reference for mmucore.access_stream (bench/bench_access.py).
 *
 * The same TLB algorithm mmucore runs for one access, and nothing else:
 *   L1 (4K: 16 sets x 4 ways, 2M: 8 sets x 4 ways) -> STLB (128 sets x 12 ways, shared by
 *   4K and 2M entries) -> 4-level walk over a radix table, setting A (and D on writes),
 *   filling STLB and L1.  Replacement: an invalid way first, else LRU by a global clock.
 *   Tags use mmucore's layout (vpn<<15 | pcid<<3 | huge<<1 | valid), so with the same
 *   stream the hit/miss counts must equal mmucore's exactly (the bench reports whether
 *   they do).
 * What it leaves out on purpose: paging-structure caches, the cost model (cycle sums),
 * most event counters, PCIDs/global entries and fault handling beyond stopping.
 *
 * The radix table has the same shape and size as mmucore's: 4 KiB tables of 512 entries
 * in one pool, non-leaf entries holding a table id in the PFN field, leaves real PTEs
 * (or PSE PMDs).  The pool is 2 MiB aligned and madvise(MADV_HUGEPAGE)d, as numpy does
 * for mmucore's 4 MiB table chunks.
 *
 * usage: baseline_walk VAS.bin KINDS.bin N BASE NPAGES HUGE WARM PASSES
 *   VAS.bin: N little-endian uint64 addresses; KINDS.bin: N uint8 (0 read, 1 write)
 *   BASE, NPAGES: the mapping (4K pages, or 2M pages when HUGE=1)
 *   WARM: run the first WARM accesses untimed first; PASSES: timed passes over all N.
 * prints one JSON line: counts of the first timed pass, best and all pass times.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#define P   (1ULL << 0)
#define RW  (1ULL << 1)
#define US  (1ULL << 2)
#define A   (1ULL << 5)
#define D   (1ULL << 6)
#define PSE (1ULL << 7)
#define NX  (1ULL << 63)
#define PFN_MASK     0x000FFFFFFFFFF000ULL
#define PMD_PFN_MASK 0x000FFFFFFFE00000ULL
#define PERM (P | RW | US | A | D | NX)
#define TABLE_FLAGS (P | RW | US | A | D)
#define VA48 ((1ULL << 48) - 1)
#define T_VALID 1ULL
#define T_HUGE 2ULL

typedef struct {
    int sets, ways;
    uint64_t set_mask;
    uint64_t *tag, *data, *stamp;
} arr_t;

static uint64_t *pool;          /* tables, 512 entries each; id 0 unused */
static uint64_t ntables, captables;
static uint64_t root;
static uint64_t clk;
static uint64_t n_l1, n_stlb, n_walk, n_fault;
static arr_t l1_4k, l1_2m, stlb;

static void arr_init(arr_t *a, int sets, int ways) {
    a->sets = sets;
    a->ways = ways;
    a->set_mask = (uint64_t)sets - 1;
    a->tag = calloc((size_t)sets * ways, 8);
    a->data = calloc((size_t)sets * ways, 8);
    a->stamp = calloc((size_t)sets * ways, 8);
}

static inline uint64_t *tbl(uint64_t e) { return pool + ((e & PFN_MASK) >> 12) * 512; }

static uint64_t alloc_table(void) {
    if (ntables >= captables) {
        fprintf(stderr, "table pool exhausted\n");
        exit(2);
    }
    return ntables++;
}

static inline int64_t find(arr_t *a, uint64_t vpn, uint64_t key) {
    uint64_t base = (vpn & a->set_mask) * (uint64_t)a->ways;
    uint64_t *t = a->tag + base;
    for (int w = 0; w < a->ways; w++)
        if (t[w] == key)
            return (int64_t)(base + w);
    return -1;
}

static inline void fill(arr_t *a, uint64_t vpn, uint64_t key, uint64_t data) {
    uint64_t base = (vpn & a->set_mask) * (uint64_t)a->ways;
    uint64_t *t = a->tag + base, *st = a->stamp + base;
    uint64_t oldest = ~0ULL;
    int victim = 0, invalid = -1;
    for (int w = 0; w < a->ways; w++) {
        if (t[w] == key) {
            a->data[base + w] = data;
            st[w] = clk;
            return;
        }
        if (!(t[w] & T_VALID)) {
            if (invalid < 0)
                invalid = w;
        } else if (st[w] < oldest) {
            oldest = st[w];
            victim = w;
        }
    }
    if (invalid >= 0)
        victim = invalid;
    t[victim] = key;
    a->data[base + victim] = data;
    st[victim] = clk;
}

/* 4-level walk from the root; returns 0, or 1 on a fault (not present / write-protect) */
static int walk(uint64_t va, int kind) {
    uint64_t *t = pool + root * 512, e = 0, acc = RW | US;
    n_walk++;
    for (int level = 4; level >= 1; level--) {
        uint64_t *slot = &t[(va >> (3 + 9 * level)) & 511];
        e = *slot;
        if (!(e & P))
            return 1;
        acc &= e;
        if (level == 1 || (level == 2 && (e & PSE))) {
            uint64_t eff = (e & ~(RW | US)) | acc;
            if (kind == 1 && !(eff & RW))
                return 1;
            e |= A;
            if (kind == 1)
                e |= D;
            *slot = e;
            eff |= e & (A | D);
            clk++;
            if (level == 2) {
                uint64_t v2 = va >> 21, key = (v2 << 15) | T_HUGE | T_VALID;
                uint64_t data = (eff & PMD_PFN_MASK) | (eff & PERM);
                fill(&stlb, v2, key, data);
                fill(&l1_2m, v2, key, data);
            } else {
                uint64_t v4 = va >> 12, key = (v4 << 15) | T_VALID;
                uint64_t data = (eff & PFN_MASK) | (eff & PERM);
                fill(&stlb, v4, key, data);
                fill(&l1_4k, v4, key, data);
            }
            return 0;
        }
        *slot = e | A;
        t = tbl(e);
    }
    return 1;
}

static int run(const uint64_t *vas, const uint8_t *kinds, uint64_t n, int have_huge) {
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v = vas[i] & VA48, v4 = v >> 12, v2 = v >> 21, data;
        int kind = kinds[i];
        int64_t s;
        clk++;
        s = find(&l1_4k, v4, (v4 << 15) | T_VALID);
        arr_t *l1 = &l1_4k;
        if (s < 0 && have_huge) {
            l1 = &l1_2m;
            s = find(l1, v2, (v2 << 15) | T_HUGE | T_VALID);
        }
        if (s >= 0) {
            n_l1++;
            l1->stamp[s] = clk;
            data = l1->data[s];
        } else {
            int huge = 0;
            s = find(&stlb, v4, (v4 << 15) | T_VALID);
            if (s < 0 && have_huge) {
                s = find(&stlb, v2, (v2 << 15) | T_HUGE | T_VALID);
                huge = 1;
            }
            if (s < 0) {
                if (walk(v, kind)) {
                    n_fault++;
                    return 1;
                }
                continue;
            }
            n_stlb++;
            stlb.stamp[s] = clk;
            data = stlb.data[s];
            if (huge)
                fill(&l1_2m, v2, stlb.tag[s], data);
            else
                fill(&l1_4k, v4, stlb.tag[s], data);
        }
        if (kind == 1) {
            if (!(data & RW)) {
                n_fault++;
                return 1;
            }
            if (!(data & D) && walk(v, kind)) {
                n_fault++;
                return 1;
            }
        }
    }
    return 0;
}

static void *read_file(const char *path, size_t bytes) {
    FILE *f = fopen(path, "rb");
    void *buf = malloc(bytes ? bytes : 1);
    if (!f || !buf || fread(buf, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", bytes, path);
        exit(2);
    }
    fclose(f);
    return buf;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: %s VAS.bin KINDS.bin N BASE NPAGES HUGE WARM PASSES\n", argv[0]);
        return 2;
    }
    uint64_t n = strtoull(argv[3], NULL, 0), base = strtoull(argv[4], NULL, 0);
    uint64_t npages = strtoull(argv[5], NULL, 0), warm = strtoull(argv[7], NULL, 0);
    int huge = atoi(argv[6]), passes = atoi(argv[8]);
    uint64_t *vas = read_file(argv[1], n * 8);
    uint8_t *kinds = read_file(argv[2], n);
    uint64_t page = huge ? (1ULL << 21) : (1ULL << 12);

    /* table pool: root + PUD/PMD/PTE tables of the mapped range, plus slack */
    uint64_t span = npages * page;
    captables = 8 + span / (1ULL << 39) + span / (1ULL << 30) + span / (1ULL << 21) +
                (huge ? 0 : npages / 512) + 8;
    size_t bytes = (captables * 4096 + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
    pool = aligned_alloc(2u << 20, bytes);
    if (!pool) {
        fprintf(stderr, "cannot allocate %zu bytes of tables\n", bytes);
        return 2;
    }
    madvise(pool, bytes, MADV_HUGEPAGE);
    memset(pool, 0, bytes);
    ntables = 1;
    root = alloc_table();

    uint64_t pfn = 0x1000;
    for (uint64_t k = 0; k < npages; k++) {
        uint64_t va = base + k * page, *t = pool + root * 512;
        int last = huge ? 2 : 1;
        for (int level = 4; level > last; level--) {
            uint64_t *e = &t[(va >> (3 + 9 * level)) & 511];
            if (!(*e & P))
                *e = (alloc_table() << 12) | TABLE_FLAGS;
            t = tbl(*e);
        }
        t[(va >> (3 + 9 * last)) & 511] = (pfn << 12) | P | RW | US | A | D | (huge ? PSE : 0);
        pfn += huge ? 512 : 1;
    }

    arr_init(&l1_4k, 16, 4);
    arr_init(&l1_2m, 8, 4);
    arr_init(&stlb, 128, 12);

    if (warm > n)
        warm = n;
    run(vas, kinds, warm, huge);

    uint64_t c_l1 = 0, c_stlb = 0, c_walk = 0, c_fault = 0;
    double best = 1e300, times[64];
    if (passes > 64)
        passes = 64;
    for (int p = 0; p < passes; p++) {
        n_l1 = n_stlb = n_walk = n_fault = 0;
        double t0 = now();
        run(vas, kinds, n, huge);
        double dt = now() - t0;
        times[p] = dt;
        if (dt < best)
            best = dt;
        if (p == 0) {
            c_l1 = n_l1;
            c_stlb = n_stlb;
            c_walk = n_walk;
            c_fault = n_fault;
        }
    }
    printf("{\"accesses\": %llu, \"l1_hits\": %llu, \"stlb_hits\": %llu, \"walks\": %llu, "
           "\"faults\": %llu, \"best_s\": %.9f, \"mps\": %.3f, \"table_bytes\": %llu, "
           "\"times\": [",
           (unsigned long long)n, (unsigned long long)c_l1, (unsigned long long)c_stlb,
           (unsigned long long)c_walk, (unsigned long long)c_fault, best, n / best / 1e6,
           (unsigned long long)(ntables * 4096));
    for (int p = 0; p < passes; p++)
        printf("%s%.9f", p ? ", " : "", times[p]);
    printf("]}\n");
    return 0;
}
