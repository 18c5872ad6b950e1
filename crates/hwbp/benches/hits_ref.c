/* Raw perf_event_open reference for benches/hits.rs: the same work as hwbp's count, stream
 * and signal modes, with nothing but the system calls.
 *
 *   hits_ref count|stream|signal N CHUNK
 *
 * Arms one 8-byte write breakpoint on a heap word of this thread, then does N stores in
 * chunks of CHUNK (stream: drains the ring after each chunk, reading every sample's fields),
 * and prints "<loop+drain wall ns> <loop+drain thread CPU ns> <hits seen> <checksum bit>" on
 * stdout. Exit status 2 if the hit count is wrong.
 */
#define _GNU_SOURCE
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile uint64_t *word;
static volatile uint64_t sig_hits;

static void on_trap(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    if (info->si_code == 6 /* TRAP_PERF */) sig_hits++;
}

static uint64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 4) return 1;
    const char *mode = argv[1];
    uint64_t n = strtoull(argv[2], 0, 10), chunk = strtoull(argv[3], 0, 10);
    word = aligned_alloc(64, 64);
    *word = 0;
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_BREAKPOINT;
    a.size = sizeof a;
    a.bp_type = HW_BREAKPOINT_W;
    a.bp_addr = (uint64_t)(uintptr_t)word;
    a.bp_len = 8;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    a.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED;
    size_t pages = 64, page = (size_t)sysconf(_SC_PAGESIZE);
    int stream = !strcmp(mode, "stream"), sig = !strcmp(mode, "signal");
    if (stream) {
        a.sample_period = 1;
        a.sample_type = PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_IP | PERF_SAMPLE_TID |
                        PERF_SAMPLE_TIME | PERF_SAMPLE_ADDR | PERF_SAMPLE_CPU |
                        PERF_SAMPLE_STREAM_ID;
        a.watermark = 1;
        a.wakeup_watermark = (uint32_t)(pages * page / 2);
    }
    if (sig) {
        a.sample_period = 1;
        a.sigtrap = 1;
        a.remove_on_exec = 1;
        a.sig_data = 42;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_trap;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGTRAP, &sa, 0);
    }
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) { perror("perf_event_open"); return 1; }
    struct perf_event_mmap_page *pg = 0;
    unsigned char *data = 0;
    uint64_t size = 0, tail = 0, samples = 0, lost = 0, sum = 0;
    if (stream) {
        void *m = mmap(0, (pages + 1) * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) { perror("mmap"); return 1; }
        pg = m;
        data = (unsigned char *)m + pg->data_offset;
        size = pg->data_size;
    }
    uint64_t t0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    for (uint64_t done = 0; done < n; done += chunk) {
        uint64_t end = done + chunk < n ? done + chunk : n;
        for (uint64_t i = done; i < end; i++) *word = i;
        if (stream) {
            uint64_t head = __atomic_load_n(&pg->data_head, __ATOMIC_ACQUIRE);
            unsigned char rec[256];
            while (tail < head) {
                struct perf_event_header h;
                for (size_t k = 0; k < sizeof h; k++) ((unsigned char *)&h)[k] = data[(tail + k) & (size - 1)];
                size_t len = h.size < sizeof rec ? h.size : sizeof rec;
                for (size_t k = 0; k < len; k++) rec[k] = data[(tail + k) & (size - 1)];
                if (h.type == PERF_RECORD_SAMPLE) {
                    uint64_t f[8];
                    memcpy(f, rec + 8, sizeof f - 8);
                    sum += f[1] + f[2] + f[3] + f[4] + f[5] + f[6];
                    samples++;
                } else if (h.type == PERF_RECORD_LOST) {
                    uint64_t f[2];
                    memcpy(f, rec + 8, sizeof f);
                    lost += f[1];
                }
                tail += h.size;
            }
            __atomic_store_n(&pg->data_tail, tail, __ATOMIC_RELEASE);
        }
    }
    uint64_t c1 = now_ns(CLOCK_THREAD_CPUTIME_ID), t1 = now_ns(CLOCK_MONOTONIC);
    uint64_t count[2] = {0, 0};
    if (read(fd, count, sizeof count) != sizeof count) return 1;
    uint64_t seen = stream ? samples + lost : sig ? sig_hits : count[0];
    printf("%llu %llu %llu %llu\n", (unsigned long long)(t1 - t0),
           (unsigned long long)(c1 - c0), (unsigned long long)seen, (unsigned long long)(sum & 1));
    return seen == n && count[0] == n ? 0 : 2;
}
