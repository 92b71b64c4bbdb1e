/*
 * hostbench: time (or mark for tracing) one memory-management scenario on this machine.
 *
 * Built and driven by pysim.host.hostbench (`pysim hostbench`); one run is
 *
 *     hostbench SCENARIO N THREADS WRITE REPS [INSTANCE]
 *
 * Without INSTANCE it prints one line "CELL CYCLES" per timed operation (REPS of
 * each cell, after a few untimed warm-up rounds).  With INSTANCE (a tracefs instance
 * directory) it times nothing: around each operation it turns the instance's tracing
 * on and writes "pysim-B CELL" to its trace_marker, then "pysim-E CELL" and tracing
 * off, so the driver counts exactly the tracepoints that fired in between.  The main
 * thread is pinned to CPU 0; with THREADS 2 a second thread of the process spins in user
 * space on CPU 1 (the cover letter's second thread).
 *
 * Placement: on a machine whose CPUs are shared with other work (a guest's vCPUs, other
 * processes), the spinner is not always running on CPU 1 when an operation flushes; the
 * kernel then sends it no IPI (should_flush_tlb: CPU 1 has another mm loaded, or KVM's
 * kvm_flush_tlb_multi: vCPU 1 is preempted and gets KVM_VCPU_FLUSH_TLB instead).  So with
 * THREADS 2 each operation waits until the spinner is seen running on CPU 1 and checks
 * that it kept running (its counter advanced) through the operation; an operation that
 * fails the check is reported with the word "misplaced" (after the cycles, or in the end
 * marker), and the driver drops it.
 *
 * Cycles are read with rdtsc (x86-64, fenced) or cntvct_el0 (arm64).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096UL
#define HPAGE (2UL << 20)
#define WARMUP 3

static inline uint64_t now(void)
{
#if defined(__x86_64__) || defined(__i386__)
    uint32_t lo, hi;
    __asm__ volatile("lfence\n\trdtsc\n\tlfence" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ volatile("isb\n\tmrs %0, cntvct_el0\n\tisb" : "=r"(v) :: "memory");
    return v;
#else
#error "hostbench needs x86-64 (rdtsc) or arm64 (cntvct_el0)"
#endif
}

static int marker_fd = -1;          /* count mode when >= 0 */
static int on_fd = -1;              /* the instance's tracing_on */
static volatile int stop_spin;
static int two_threads;             /* THREADS == 2: check the spinner's placement */
static volatile uint64_t spin_count;    /* the spinner's progress */
static volatile int spin_cpu = -1;      /* where the spinner last saw itself run */
static uint64_t spin_at_begin;

static void die(const char *what)
{
    fprintf(stderr, "hostbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set))
        die("sched_setaffinity");
}

static void *spinner(void *arg)
{
    (void)arg;
    pin(1);
    while (!stop_spin) {
        uint64_t c = spin_count + 1;
        spin_count = c;
        if ((c & 255) == 0)
            spin_cpu = sched_getcpu();
    }
    return NULL;
}

/* Wait (at most ~1 s) until the spinner is seen running on CPU 1: its counter moves
 * while this thread watches; then note the counter for placed(). */
static void await_spinner(void)
{
    for (long i = 0; i < 1000000; i++) {
        uint64_t c = spin_count;
        for (int j = 0; j < 2000 && spin_count == c; j++)
            __asm__ volatile("pause" ::: "memory");
        if (spin_count != c && spin_cpu == 1)
            break;
        sched_yield();
    }
    spin_at_begin = spin_count;
}

/* Whether the spinner ran on CPU 1 through the operation just ended (always true with
 * one thread). */
static int placed(void)
{
    return !two_threads || (spin_count != spin_at_begin && spin_cpu == 1);
}

/* Open the timed (or marked) region of cell `name` in round `round` (< 0: warm-up,
 * neither printed nor marked); returns the start time. */
static inline uint64_t begin(const char *name, int round)
{
    if (marker_fd >= 0) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "pysim-B %s", name);
        if (two_threads && round >= 0)
            await_spinner();
        if (round >= 0 && (write(on_fd, "1", 1) != 1 || write(marker_fd, buf, n) != n))
            die("trace_marker");
        return 0;
    }
    if (two_threads && round >= 0)
        await_spinner();
    return now();
}

/* Close the region begun at t0; print its cycles (or mark its end) unless warming up. */
static inline void end(const char *name, uint64_t t0, int round)
{
    if (marker_fd >= 0) {
        char buf[64];
        int ok = placed();
        int n = snprintf(buf, sizeof(buf), "pysim-E %s%s", name, ok ? "" : " misplaced");
        if (round >= 0 && (write(marker_fd, buf, n) != n || write(on_fd, "0", 1) != 1))
            die("trace_marker");
        return;
    }
    uint64_t t1 = now();
    if (round >= 0)
        printf("%s %llu%s\n", name, (unsigned long long)(t1 - t0),
               placed() ? "" : " misplaced");
}

static char *map(size_t len, int prot, int flags)
{
    void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

/* A 2 MiB-aligned anonymous region of n huge pages with MADV_HUGEPAGE. */
static char *map_huge(size_t n, int touch)
{
    size_t len = n * HPAGE;
    char *raw = map(len + HPAGE, PROT_READ | PROT_WRITE, 0);
    char *p = (char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
    if (p > raw)
        munmap(raw, p - raw);
    if (p + len < raw + len + HPAGE)
        munmap(p + len, raw + len + HPAGE - (p + len));
    if (madvise(p, len, MADV_HUGEPAGE))
        die("madvise(MADV_HUGEPAGE)");
    if (touch)
        for (size_t i = 0; i < n; i++)
            p[i * HPAGE] = 1;
    return p;
}

static void populate(char *p, size_t pages)
{
    for (size_t i = 0; i < pages; i++)
        p[i * PAGE] = 1;
}

/* A separate anonymous RW mapping of `pages` pages between PROT_NONE guard pages, so
 * that mprotect of it neither merges with nor splits a neighbour. */
static char *guarded(size_t pages)
{
    char *area = map((pages + 2) * PAGE, PROT_NONE, MAP_NORESERVE);
    char *p = mmap(area + PAGE, pages * PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

/* mprotect(PROT_READ) then mprotect(PROT_READ|PROT_WRITE) of [p, p+len), both timed. */
static void read_rw(char *p, size_t len, int reps)
{
    for (int r = -WARMUP; r < reps; r++) {
        uint64_t t = begin("prot_read", r);
        if (mprotect(p, len, PROT_READ))
            die("mprotect");
        end("prot_read", t, r);
        t = begin("prot_rw", r);
        if (mprotect(p, len, PROT_READ | PROT_WRITE))
            die("mprotect");
        end("prot_rw", t, r);
    }
}

/* The seed loop; `lo` is the protection the first step sets (PROT_READ or PROT_NONE). */
static void seed(int lo, int write_, int populated, int reps)
{
    char *p = guarded(1);
    const char *first = lo == PROT_NONE ? "prot_none" : "prot_read";
    if (populated)
        p[0] = 1;
    for (int r = -WARMUP; r < reps; r++) {
        uint64_t t = begin(first, r);
        if (mprotect(p, PAGE, lo))
            die("mprotect");
        end(first, t, r);
        t = begin("prot_rw", r);
        if (mprotect(p, PAGE, PROT_READ | PROT_WRITE))
            die("mprotect");
        end("prot_rw", t, r);
        if (write_) {
            t = begin("write", r);
            *(volatile char *)p = 0;
            end("write", t, r);
        }
    }
}

/* One timed fault per round on fresh memory: kind "anon", "zero", "cow" or "thp". */
static void faults(const char *kind, int reps)
{
    size_t n = reps + WARMUP;
    char *p;
    size_t stride = PAGE;
    if (!strcmp(kind, "thp")) {
        p = map_huge(n, 0);
        stride = HPAGE;
    } else if (!strcmp(kind, "cow")) {
        int fd = memfd_create("hostbench", 0);
        if (fd < 0)
            die("memfd_create");
        char page[PAGE];
        memset(page, 7, sizeof(page));
        for (size_t i = 0; i < n; i++)
            if (write(fd, page, PAGE) != (ssize_t)PAGE)
                die("write");
        p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            die("mmap");
        close(fd);
        for (size_t i = 0; i < n; i++)          /* map the page-cache pages read-only */
            (void)*(volatile char *)(p + i * PAGE);
    } else {
        p = guarded(n);
    }
    for (int r = -WARMUP; r < reps; r++) {
        volatile char *q = p + (size_t)(r + WARMUP) * stride;
        uint64_t t = begin("fault", r);
        if (!strcmp(kind, "zero"))
            (void)*q;
        else
            *q = 0;
        end("fault", t, r);
    }
}

/* munmap or MADV_DONTNEED of n populated pages (huge: n THPs), fresh memory per round. */
static void zap(int dontneed, int huge, size_t n, int reps)
{
    const char *cell = dontneed ? "dontneed" : "munmap";
    size_t len = huge ? n * HPAGE : n * PAGE;
    char *keep = dontneed && !huge ? guarded(n) : NULL;
    for (int r = -WARMUP; r < reps; r++) {
        char *p = huge ? map_huge(n, 1) : keep;
        if (!huge) {
            if (!p)
                p = guarded(n);
            populate(p, n);
        }
        uint64_t t = begin(cell, r);
        int rc = dontneed ? madvise(p, len, MADV_DONTNEED) : munmap(p, len);
        end(cell, t, r);
        if (rc)
            die(cell);
        if (dontneed && huge)
            munmap(p, len);
        if (!dontneed && !huge) {                   /* the guard pages */
            munmap(p - PAGE, PAGE);
            munmap(p + len, PAGE);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: hostbench SCENARIO N THREADS WRITE REPS [INSTANCE]\n");
        return 2;
    }
    const char *sc = argv[1];
    size_t n = strtoul(argv[2], NULL, 10);
    int threads = atoi(argv[3]), write_ = atoi(argv[4]), reps = atoi(argv[5]);
    pthread_t th;
    if (argc == 7) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/trace_marker", argv[6]);
        if ((marker_fd = open(path, O_WRONLY)) < 0)
            die("open trace_marker");
        snprintf(path, sizeof(path), "%s/tracing_on", argv[6]);
        if ((on_fd = open(path, O_WRONLY)) < 0)
            die("open tracing_on");
    }
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    pin(0);
    if (threads == 2 && pthread_create(&th, NULL, spinner, NULL))
        die("pthread_create");
    if (threads == 2)
        usleep(20000);                              /* let it reach CPU 1 */
    two_threads = threads == 2;

    if (!strcmp(sc, "now")) {
        printf("now %llu\n", (unsigned long long)now());
    } else if (!strcmp(sc, "empty")) {
        for (int r = -WARMUP; r < reps; r++) {
            uint64_t t = begin("empty", r);
            end("empty", t, r);
        }
    } else if (!strcmp(sc, "getppid")) {
        for (int r = -WARMUP; r < reps; r++) {
            uint64_t t = begin("getppid", r);
            syscall(SYS_getppid);
            end("getppid", t, r);
        }
    } else if (!strcmp(sc, "mprotect_noop")) {
        char *p = guarded(1);
        p[0] = 1;
        for (int r = -WARMUP; r < reps; r++) {
            uint64_t t = begin("mprotect_noop", r);
            if (mprotect(p, PAGE, PROT_READ | PROT_WRITE))
                die("mprotect");
            end("mprotect_noop", t, r);
        }
    } else if (!strcmp(sc, "seed")) {
        seed(PROT_READ, write_, 1, reps);
    } else if (!strcmp(sc, "seed_none")) {
        seed(PROT_NONE, write_, 1, reps);
    } else if (!strcmp(sc, "seed_unpop")) {
        seed(PROT_READ, 0, 0, reps);
    } else if (!strcmp(sc, "mprotect")) {
        char *p = guarded(n);
        populate(p, n);
        read_rw(p, n * PAGE, reps);
    } else if (!strcmp(sc, "span")) {
        char *p = guarded(n);
        p[0] = 1;
        p[(n - 1) * PAGE] = 1;
        read_rw(p, n * PAGE, reps);
    } else if (!strcmp(sc, "thp")) {
        char *p = map_huge(n, 1);
        read_rw(p, n * HPAGE, reps);
    } else if (!strcmp(sc, "kvma")) {
        /* n one-page VMAs that cannot merge: MADV_HUGEPAGE and MADV_NOHUGEPAGE alternate */
        char *p = guarded(n);
        populate(p, n);
        for (size_t i = 0; i < n; i++)
            if (madvise(p + i * PAGE, PAGE, i % 2 ? MADV_NOHUGEPAGE : MADV_HUGEPAGE))
                die("madvise");
        read_rw(p, n * PAGE, reps);
    } else if (!strncmp(sc, "fault_", 6)) {
        faults(sc + 6, reps);
    } else if (!strcmp(sc, "munmap") || !strcmp(sc, "dontneed")) {
        zap(sc[0] == 'd', 0, n, reps);
    } else if (!strcmp(sc, "munmap_thp") || !strcmp(sc, "dontneed_thp")) {
        zap(sc[0] == 'd', 1, n, reps);
    } else {
        fprintf(stderr, "hostbench: unknown scenario %s\n", sc);
        return 2;
    }
    fflush(stdout);
    stop_spin = 1;
    if (threads == 2)
        pthread_join(th, NULL);
    return 0;
}
