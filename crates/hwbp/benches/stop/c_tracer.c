/* The minimal C ptrace tracer of measured-on-this-machine.md (row i): fork, PTRACE_TRACEME,
 * exec; at the exec stop DR0 = addr, DR7 = 0x90001 (L0, write, 8 bytes); at each SIGTRAP:
 * PEEKUSER DR6, PEEKDATA the value, POKEUSER DR6 = 0, PTRACE_CONT. Prints the hit count.
 * Usage: c_tracer ADDR PROGRAM ARGS... */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>
#include <signal.h>
int main(int argc, char **argv) {
    long addr = strtol(argv[1], 0, 0);
    pid_t c = fork();
    if (c == 0) { ptrace(PTRACE_TRACEME, 0, 0, 0); execv(argv[2], argv + 2); _exit(127); }
    int st;
    waitpid(c, &st, 0);
    ptrace(PTRACE_POKEUSER, c, offsetof(struct user, u_debugreg[0]), addr);
    ptrace(PTRACE_POKEUSER, c, offsetof(struct user, u_debugreg[7]), 0x90001);
    ptrace(PTRACE_CONT, c, 0, 0);
    long hits = 0, sum = 0;
    for (;;) {
        waitpid(c, &st, 0);
        if (WIFEXITED(st) || WIFSIGNALED(st)) break;
        if (WSTOPSIG(st) == SIGTRAP) {
            long dr6 = ptrace(PTRACE_PEEKUSER, c, offsetof(struct user, u_debugreg[6]), 0);
            long v = ptrace(PTRACE_PEEKDATA, c, addr, 0);
            ptrace(PTRACE_POKEUSER, c, offsetof(struct user, u_debugreg[6]), 0);
            if (dr6 & 1) { hits++; sum += v; }
            ptrace(PTRACE_CONT, c, 0, 0);
        } else ptrace(PTRACE_CONT, c, 0, WSTOPSIG(st));
    }
    printf("%ld\n", hits);
    return sum == -1;
}
