/* writefile PATH TEXT: create PATH with TEXT; on failure print "errno N NAME" on stderr and exit 1. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: writefile PATH TEXT\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "w");
    if (!f || fputs(argv[2], f) < 0 || fclose(f) != 0) {
        int e = errno;
        fprintf(stderr, "errno %d %s\n", e, strerror(e));
        return 1;
    }
    printf("wrote %s\n", argv[1]);
    return 0;
}
