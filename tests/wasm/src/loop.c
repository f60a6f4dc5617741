/* loop: spin forever without calling the host (only an epoch deadline or fuel can stop it). */
int main(void) {
    volatile unsigned long n = 0;
    for (;;)
        n++;
}
