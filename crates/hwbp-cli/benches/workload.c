/* hwbp CLI benchmark workload: N stores to one watched global, on the line marked HIT.
 * Build: cc -g -O1 -no-pie workload.c -o workload
 */
#include <stdlib.h>

volatile long target;

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    for (long i = 0; i < n; i++)
        target = i; /* HIT */
    return 0;
}
