/* readfile PATH: print PATH's contents; on failure print "errno N NAME" on stderr and exit 1. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: readfile PATH\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        int e = errno;
        fprintf(stderr, "errno %d %s\n", e, strerror(e));
        return 1;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
    return 0;
}
