#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_INTERLEAVE 3
#define MPOL_LOCAL 4
#define MPOL_PREFERRED_MANY 5
#define MPOL_WEIGHTED_INTERLEAVE 6
#define MPOL_F_STATIC_NODES (1 << 15)
#define MPOL_F_RELATIVE_NODES (1 << 14)
#define MPOL_F_NUMA_BALANCING (1 << 13)
#define MPOL_MF_STRICT 1
#define MPOL_MF_MOVE 2
#define MPOL_MF_MOVE_ALL 4
#define MPOL_F_NODE 1
#define MPOL_F_ADDR 2
#define MPOL_F_MEMS_ALLOWED 4
static long mb(void *a, unsigned long l, int m, unsigned long *n, unsigned long mx, unsigned f) { return syscall(SYS_mbind, a, l, m, n, mx, f); }
static long gm(int *p, unsigned long *n, unsigned long mx, void *a, unsigned long f) { return syscall(SYS_get_mempolicy, p, n, mx, a, f); }
static long sm(int m, unsigned long *n, unsigned long mx) { return syscall(SYS_set_mempolicy, m, n, mx); }
int main(void) {
  char *p = mmap(NULL, 16 << 12, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  unsigned long n0 = 1, n1 = 2, n01 = 3, big[32]; memset(big, 0, sizeof big);
  int pol;
  for (int i = 0; i < 16; i++) p[i << 12] = 1;
  mb(p, 4 << 12, MPOL_PREFERRED, NULL, 0, 0);            /* local: split */
  mb(p + (4 << 12), 4 << 12, MPOL_PREFERRED, NULL, 0, 0); /* merges with the first */
  mb(p + (8 << 12), 4 << 12, MPOL_BIND, &n0, 64, 0);
  mb(p + (8 << 12), 4 << 12, MPOL_BIND, &n1, 64, 0);       /* node 1 absent: EINVAL */
  mb(p + (8 << 12), 4 << 12, MPOL_BIND, &n01, 64, 0);
  mb(p + (8 << 12), 4 << 12, MPOL_INTERLEAVE, &n0, 64, MPOL_MF_STRICT);
  mb(p + (8 << 12), 4 << 12, MPOL_BIND, &n0, 64, MPOL_MF_MOVE);
  mb(p + (8 << 12), 4 << 12, MPOL_BIND, &n0, 64, MPOL_MF_MOVE_ALL);
  mb(p + (8 << 12), 4 << 12, MPOL_BIND, &n0, 64, 8);        /* unknown flag */
  mb(p + (8 << 12), 4 << 12, 7, &n0, 64, 0);                /* mode >= MPOL_MAX */
  mb(p + (8 << 12), 4 << 12, MPOL_BIND | MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES, &n0, 64, 0);
  mb(p + (8 << 12), 4 << 12, MPOL_INTERLEAVE | MPOL_F_NUMA_BALANCING, &n0, 64, 0);
  mb(p + (8 << 12), 4 << 12, MPOL_BIND | MPOL_F_NUMA_BALANCING, &n0, 64, 0);
  mb(p + (8 << 12), 4 << 12, MPOL_PREFERRED_MANY | MPOL_F_NUMA_BALANCING, &n0, 64, 0);
  mb(p + (8 << 12), 4 << 12, MPOL_BIND, NULL, 0, 0);         /* empty: EINVAL */
  mb(p + (8 << 12), 4 << 12, MPOL_DEFAULT, &n0, 64, 0);      /* default with nodes: EINVAL */
  mb(p + (8 << 12), 4 << 12, MPOL_LOCAL, &n0, 64, 0);        /* EINVAL */
  mb(p + (8 << 12), 4 << 12, MPOL_PREFERRED | MPOL_F_STATIC_NODES, NULL, 0, 0); /* EINVAL */
  mb(p + 1, 4 << 12, MPOL_BIND, &n0, 64, 0);                 /* unaligned */
  mb(p, 0, MPOL_BIND, &n0, 64, 0);                           /* zero length: 0 */
  mb(p, 0, 9, &n0, 64, 0);                                   /* bad mode, zero length */
  mb(p + (12 << 12), 8 << 12, MPOL_BIND, &n0, 64, 0);        /* tail hole: EFAULT */
  mb(p + (16 << 12), 4 << 12, MPOL_DEFAULT, NULL, 0, 0);     /* whole hole, default */
  mb(p + (12 << 12), 8 << 12, MPOL_DEFAULT, NULL, 0, 0);     /* partly, default: ok */
  mb(p - (4 << 12), 8 << 12, MPOL_BIND, &n0, 64, 0);         /* head hole */
  mb(p, 4 << 12, MPOL_BIND, &n0, 100000, 0);                 /* maxnode too big */
  mb(p, 4 << 12, MPOL_BIND, big, 2048, 0);                   /* long zero mask */
  big[20] = 1; mb(p, 4 << 12, MPOL_BIND, big, 2048, 0);      /* a bit past MAX_NUMNODES */
  mb(p, 4 << 12, MPOL_BIND, &n0, 1, 0);                      /* maxnode 1: no nodes */
  mb(p, 4 << 12, MPOL_BIND, &n0, 0, 0);                      /* maxnode 0 */
  mb(p, 4 << 12, MPOL_WEIGHTED_INTERLEAVE, &n0, 64, 0);
  mb(p, 4 << 12, MPOL_DEFAULT, NULL, 0, MPOL_MF_STRICT);
  mb(p, 16 << 12, MPOL_PREFERRED, &n0, 64, MPOL_MF_STRICT);
  mb(p, 16 << 12, MPOL_LOCAL, NULL, 0, MPOL_MF_STRICT);
  mb(p, 16 << 12, MPOL_PREFERRED, NULL, 0, MPOL_MF_STRICT);
  mb(p, 16 << 12, MPOL_BIND, &n01, 64, MPOL_MF_STRICT);
  mprotect(p + (2 << 12), 4096, PROT_READ);
  mb(p, 16 << 12, MPOL_DEFAULT, NULL, 0, 0);
  gm(&pol, NULL, 0, NULL, 0);
  gm(&pol, &n0, 64, NULL, 0);
  gm(&pol, &n0, 0, NULL, 0);
  gm(&pol, NULL, 0, p, 0);                                  /* addr without F_ADDR */
  gm(&pol, NULL, 0, p, MPOL_F_ADDR);
  gm(&pol, NULL, 0, p + (20 << 12), MPOL_F_ADDR);           /* unmapped: EFAULT */
  gm(&pol, NULL, 0, p, MPOL_F_ADDR | MPOL_F_NODE);
  gm(&pol, NULL, 0, NULL, MPOL_F_NODE);                     /* EINVAL */
  gm(&pol, &n0, 64, NULL, MPOL_F_MEMS_ALLOWED);
  gm(&pol, &n0, 64, NULL, MPOL_F_MEMS_ALLOWED | MPOL_F_NODE);
  gm(&pol, NULL, 0, NULL, 8);
  sm(MPOL_INTERLEAVE, &n0, 64);
  gm(&pol, NULL, 0, NULL, MPOL_F_NODE);                     /* interleave: next node */
  sm(MPOL_BIND, &n1, 64);
  sm(MPOL_PREFERRED, NULL, 0);
  sm(MPOL_LOCAL, NULL, 0);
  sm(MPOL_DEFAULT, NULL, 0);
  sm(8, NULL, 0);
  sm(MPOL_BIND | MPOL_F_STATIC_NODES, &n0, 64);
  char *q = mmap(NULL, 4 << 12, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  gm(&pol, NULL, 0, q, MPOL_F_ADDR | MPOL_F_NODE);           /* PROT_NONE: EFAULT */
  mb(q, 4 << 12, MPOL_BIND, &n0, 64, 0);
  syscall(SYS_set_mempolicy_home_node, p, 4 << 12, 0, 0);
  syscall(SYS_set_mempolicy_home_node, p + (8 << 12), 4 << 12, 0, 0);
  syscall(SYS_set_mempolicy_home_node, p + (8 << 12), 4 << 12, 1, 0);
  syscall(SYS_set_mempolicy_home_node, p + (8 << 12), 4 << 12, 0, 1);
  munmap(p, 16 << 12);
  return 0;
}
