/* nap: block in one host call for an hour (poll_oneoff): no epoch deadline interrupts it, only the native kill. */
#include <unistd.h>

int main(void) {
    sleep(3600);
    return 0;
}
