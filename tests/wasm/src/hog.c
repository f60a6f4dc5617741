/* hog: allocate and touch 1 MiB at a time without bound; abort() (a trap) when malloc fails, as xmalloc would. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *volatile last; /* the pointer escapes: the compiler must keep every allocation */

int main(void) {
    for (unsigned long mib = 0;; mib++) {
        char *p = malloc(1 << 20);
        if (!p) {
            fprintf(stderr, "hog: malloc failed after %lu MiB\n", mib);
            abort();
        }
        memset(p, 1, 1 << 20);
        last = p;
    }
}
