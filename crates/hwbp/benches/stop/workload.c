/* The stop-mode benchmark workload (as in measured-on-this-machine.md): N stores to `target`.
 * Each store changes the value (i + 1), so gdb's `watch` (which reports changes) stops at every
 * one of them, like the other tools: every row must see exactly N hits. */
#include <stdlib.h>
volatile long target;
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000;
    for (long i = 0; i < n; i++) target = i + 1;
    return 0;
}
