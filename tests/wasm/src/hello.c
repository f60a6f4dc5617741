/* hello: print one line on stdout (imports only stdout/args/exit). */
#include <stdio.h>

int main(void) {
    printf("hello from wasm\n");
    return 0;
}
