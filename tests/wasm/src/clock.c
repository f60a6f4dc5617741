/* clock: print the wall clock and a random number (imports clocks and random). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(void) {
    unsigned r;
    arc4random_buf(&r, sizeof r);
    printf("time %lld random %u\n", (long long)time(NULL), r);
    return 0;
}
