/* mprotect a page writable, then write it at once: its page fault must come after
   the mprotect and after the realtime read between them (printed, ns since epoch) */
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
int main(void) {
    enum { N = 32 };
    char *p = mmap(0, N * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct timespec after[N];
    for (int i = 0; i < N; i++) {
        mprotect(p + i * 4096, 4096, PROT_READ | PROT_WRITE);
        clock_gettime(CLOCK_REALTIME, &after[i]);
        p[i * 4096] = 1;
    }
    printf("%lx\n", (unsigned long)p);
    for (int i = 0; i < N; i++)
        printf("%lld\n", (long long)after[i].tv_sec * 1000000000LL + after[i].tv_nsec);
    return 0;
}
