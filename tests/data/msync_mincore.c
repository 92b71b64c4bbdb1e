#define _GNU_SOURCE
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
int main(void) {
  unsigned char v[64];
  int fd = open("/tmp/ms/f.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
  ftruncate(fd, 16 << 12);
  char *p = mmap(NULL, 16 << 12, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0);
  char *q = mmap(NULL, 8 << 12, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  p[0] = 1; p[5 << 12] = 2; q[0] = 1;
  msync(p, 16 << 12, MS_SYNC);
  msync(p, 16 << 12, MS_ASYNC);
  msync(p, 16 << 12, MS_INVALIDATE);
  msync(p, 16 << 12, MS_SYNC | MS_ASYNC);
  msync(p, 16 << 12, 8);
  msync(p + 1, 4096, MS_SYNC);
  msync(p, 0, MS_SYNC);
  msync(p, (unsigned long)-4096, MS_SYNC);
  munmap(p + (4 << 12), 4096);
  msync(p, 16 << 12, MS_SYNC);
  msync(p, 16 << 12, MS_ASYNC);
  msync(p + (4 << 12), 4096, MS_SYNC);
  msync(p + (4 << 12), 8192, MS_ASYNC);
  msync(p + (4 << 12), 8192, MS_SYNC);
  mlock(q, 4096);
  msync(q, 4096, MS_INVALIDATE);
  msync(q, 4096, MS_SYNC);
  mincore(p, 4 << 12, v);
  mincore(q, 8 << 12, v);
  mincore(p, 16 << 12, v);
  mincore(p + 1, 4096, v);
  mincore(p + (4 << 12), 4096, v);
  mincore(p, 0, v);
  mincore((void *)0x7ffffffff000UL, 8192, v);
  mincore(p, 4 << 12, (void *)8);
  return 0;
}
