/* In-process references for the agent's per-hit cost (measured-on-this-machine.md rows b, d):
 * the workload's loop (N stores of i + 1 to `target`) with a perf breakpoint the process opens
 * on itself (8-byte write, exclude_kernel). Prints the hit count; exit status 0.
 *   count  sample_period=0, the count read at the end: the #DB trap alone.
 *   empty  sample_period=1, sigtrap=1, a SA_SIGINFO handler that counts si_code == TRAP_PERF:
 *          the trap plus a signal delivery and sigreturn.
 *   agent  the same with the agent's handler work (crates/hwbp-agent/src/agent.rs,
 *          record_hit): gettid, clock_gettime, prctl(PR_GET_NAME), the futex lock's cmpxchg,
 *          process_vm_readv of the watched bytes from itself (getpid), `rip` from the
 *          ucontext, a 296-byte record
 *          written into a 4096-slot ring, head published; nobody consumes the ring.
 * Usage: inproc count|empty|agent N */
#define _GNU_SOURCE
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef TRAP_PERF
#define TRAP_PERF 6 /* glibc 2.36 lacks it; asm-generic/siginfo.h */
#endif

volatile long target;
static volatile long hits;

struct record { /* crates/hwbp-agent/src/layout.rs, Record: 296 bytes */
    uint32_t tid;
    uint16_t watch, piece;
    uint32_t flags, len;
    uint64_t time_ns;
    char comm[16];
    uint8_t bytes[32];
    uint64_t regs[27];
    uint32_t stack_len, pad;
};
static struct record ring[4096];
static uint64_t head;
static uint32_t lock;

static void on_empty(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (si->si_code == TRAP_PERF) hits++;
}

static void on_agent(int sig, siginfo_t *si, void *ucv) {
    (void)sig;
    if (si->si_code != TRAP_PERF) return;
    ucontext_t *uc = ucv;
    struct record out;
    memset(&out, 0, sizeof out);
    out.tid = (uint32_t)syscall(SYS_gettid);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    out.time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    prctl(PR_GET_NAME, out.comm);
    uint32_t free_ = 0;
    __atomic_compare_exchange_n(&lock, &free_, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
    out.len = 8;
    struct iovec local = {out.bytes, 8}, remote = {(void *)&target, 8};
    if (syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0) != 8) out.flags = 1;
    out.regs[16] = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    uint64_t h = __atomic_load_n(&head, __ATOMIC_RELAXED);
    ring[h % 4096] = out;
    __atomic_store_n(&head, h + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
    hits++;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: inproc count|empty|agent N\n"); return 2; }
    int count = !strcmp(argv[1], "count"), agent = !strcmp(argv[1], "agent");
    if (!count && !agent && strcmp(argv[1], "empty")) { fprintf(stderr, "bad mode\n"); return 2; }
    long n = atol(argv[2]);
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_BREAKPOINT;
    a.size = sizeof a;
    a.bp_type = HW_BREAKPOINT_W;
    a.bp_addr = (uint64_t)(uintptr_t)&target;
    a.bp_len = HW_BREAKPOINT_LEN_8;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    if (!count) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = agent ? on_agent : on_empty;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGTRAP, &sa, 0);
        a.sample_period = 1;
        a.sigtrap = 1;
        a.remove_on_exec = 1;
        a.sig_data = 0x6877627000000000ull;
    }
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    if (fd < 0) { perror("perf_event_open"); return 1; }
    for (long i = 0; i < n; i++) target = i + 1;
    long seen = hits;
    if (count) {
        uint64_t c = 0;
        if (read(fd, &c, sizeof c) != sizeof c) { perror("read"); return 1; }
        seen = (long)c;
    }
    printf("%ld\n", seen);
    return 0;
}
