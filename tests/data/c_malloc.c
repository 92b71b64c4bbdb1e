#include <stdlib.h>
#include <string.h>
#include <stdio.h>
int main(void) {
    void *p[8];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 8; i++) { p[i] = malloc((size_t)(i + 1) << 20); memset(p[i], 1, 4096); }
        for (int i = 0; i < 8; i++) free(p[i]);
    }
    char *s = malloc(100); s = realloc(s, 300000); s = realloc(s, 3000000); free(s);
    for (int i = 0; i < 50; i++) { char *q = malloc(20000); q[0] = 1; free(q); }
    puts("ok");
    return 0;
}
