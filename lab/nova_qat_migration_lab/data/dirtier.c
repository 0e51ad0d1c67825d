/*
 * Licensed under the Apache License, Version 2.0 (the "License"); you may
 * not use this file except in compliance with the License. You may obtain
 * a copy of the License at
 *
 *      http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 * WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 * License for the specific language governing permissions and limitations
 * under the License.
 *
 * dirtier: the lab guest's busy, self-checking workload.
 *
 * Runs as the guest's only program (from the initramfs /init). It fills
 * `dirtier.mem` MiB with pages whose whole content is a deterministic
 * function of (page index, generation), keeps rewriting pages of the first
 * `dirtier.hot` MiB at `dirtier.rate` pages/s, and verifies every page on
 * request. A separate generation table (also in guest RAM) records the
 * generation each page must hold, so a page that migration left stale is
 * caught as well as a page whose bytes were damaged.
 *
 * Patterns (`dirtier.pattern`):
 *   zero   - header only, body all zero (compresses to nothing)
 *   small  - incompressible body, each rewrite changes ~24 bytes
 *            (what XBZRLE is made for)
 *   text   - text-like body (~2x with zstd-1), rewritten whole
 *   random - incompressible body, rewritten whole
 *
 * Serial protocol (stdin/stdout are /dev/ttyS0, raw mode):
 *   guest -> host: "READY pages=N", "STAT t=S gen=G rate=R",
 *                  "VERIFY OK <token> pages=N", "VERIFY FAIL <token> ..."
 *   host -> guest: "VERIFY <token>\n", "PAUSE\n", "RESUME\n",
 *                  "CORRUPT\n" (damages one page: tests the checker),
 *                  "RATE <pages/s>\n" (changes the rewrite rate from now
 *                  on; answers "RATE rate=<pages/s>"; the lab's faults
 *                  use it to make the dirty rate jump mid-migration)
 *
 * Build: gcc -static -O2 -o dirtier dirtier.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define SLOT 64
#define NSLOTS (PAGE / SLOT)
#define MAGIC 0x51415444u   /* "DTAQ" */
#define TICK_MS 10

enum pattern { P_ZERO, P_SMALL, P_TEXT, P_RANDOM };

struct header {
    uint32_t magic;
    uint32_t index;
    uint32_t gen;
    uint32_t check;
};

static unsigned long opt_mem = 256, opt_hot = 64, opt_rate = 1000;
static unsigned long opt_seed = 1, opt_stat = 5;
static enum pattern opt_pattern = P_SMALL;
static uint8_t *mem;
static uint32_t *gens;
static unsigned long npages, nhot;

static const char *words[] = {
    "the", "migration", "of", "memory", "page", "guest", "host", "and",
    "dirty", "rate", "compress", "network", "stream", "channel", "to", "is",
    "nova", "libvirt", "qemu", "instance", "compute", "scheduler", "a",
    "request", "response", "error", "warning", "info", "debug", "log",
    "value", "key", "table", "row", "column", "index", "select", "from",
    "where", "order", "by", "group", "insert", "update", "delete", "commit",
    "user", "session", "token", "cache", "buffer", "queue", "worker", "job",
    "time", "date", "status", "ok", "failed", "retry", "timeout", "in",
    "out", "for",
};

static inline uint64_t mix(uint64_t x)
{
    /* splitmix64 finaliser: a cheap, good seed scrambler. */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline uint32_t check_of(uint32_t index, uint32_t gen)
{
    return (uint32_t)mix(((uint64_t)index << 32) ^ gen ^ opt_seed);
}

/* The body of page `index` at generation `gen`, written into `out`
 * (PAGE - sizeof(header) bytes). Used to write and to verify. */
static void body_of(uint32_t index, uint32_t gen, uint8_t *out)
{
    size_t n = PAGE - sizeof(struct header);
    uint64_t s;
    size_t i;

    switch (opt_pattern) {
    case P_ZERO:
        memset(out, 0, n);
        return;
    case P_SMALL: {
        /* Fixed random base; one 64-byte slot carries the generation. */
        uint64_t *w = (uint64_t *)out;
        unsigned slot;
        s = mix(((uint64_t)index << 20) ^ opt_seed) | 1;
        for (i = 0; i < n / 8; i++)
            w[i] = xorshift(&s);
        slot = 1 + gen % (NSLOTS - 1);
        /* offset within body = slot*64 - header size */
        w = (uint64_t *)(out + slot * SLOT - sizeof(struct header));
        w[0] = mix(((uint64_t)gen << 32) | index);
        w[1] = w[0] ^ 0xa5a5a5a5a5a5a5a5ull;
        w[2] = gen;
        return;
    }
    case P_RANDOM: {
        uint64_t *w = (uint64_t *)out;
        s = mix(((uint64_t)index << 32) ^ ((uint64_t)gen << 1) ^ opt_seed) | 1;
        for (i = 0; i < n / 8; i++)
            w[i] = xorshift(&s);
        return;
    }
    case P_TEXT: {
        /* Words from a small dictionary mixed with a random hex field:
         * compresses about 2x with zstd -1, like logs or JSON. */
        static const char hex[] = "0123456789abcdef";
        size_t pos = 0;
        s = mix(((uint64_t)index << 32) ^ ((uint64_t)gen << 1) ^ opt_seed) | 1;
        while (pos < n) {
            uint64_t r = xorshift(&s);
            const char *wd = words[r % (sizeof(words) / sizeof(words[0]))];
            int k;
            while (*wd && pos < n)
                out[pos++] = (uint8_t)*wd++;
            if (pos < n)
                out[pos++] = ' ';
            if ((r >> 6) & 1) {
                for (k = 0; k < 6 && pos < n; k++)
                    out[pos++] = (uint8_t)hex[(r >> (8 + 4 * k)) & 15];
                if (pos < n)
                    out[pos++] = ((r >> 40) & 7) ? ' ' : '\n';
            }
        }
        return;
    }
    }
}

static void write_page(uint32_t index, uint32_t gen)
{
    uint8_t *p = mem + (size_t)index * PAGE;
    struct header *h = (struct header *)p;

    if (opt_pattern == P_SMALL && gen > 0) {
        /* Only touch what changes: restore the old slot, stamp the new. */
        static uint8_t buf[PAGE];
        unsigned old = 1 + (gen - 1) % (NSLOTS - 1);
        unsigned cur = 1 + gen % (NSLOTS - 1);
        body_of(index, gen, buf);
        memcpy(p + old * SLOT, buf + old * SLOT - sizeof(*h), 24);
        memcpy(p + cur * SLOT, buf + cur * SLOT - sizeof(*h), 24);
    } else {
        body_of(index, gen, p + sizeof(*h));
    }
    h->magic = MAGIC;
    h->index = index;
    h->gen = gen;
    h->check = check_of(index, gen);
    gens[index] = gen;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(line) - 3)
        n = sizeof(line) - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    (void)!write(1, line, n);
}

static void verify(const char *token)
{
    static uint8_t buf[PAGE];
    unsigned long bad = 0, stale = 0, first = ~0ul;
    uint32_t first_got = 0, first_want = 0;
    unsigned long i;
    double t0 = now_s();

    for (i = 0; i < npages; i++) {
        uint8_t *p = mem + i * PAGE;
        struct header *h = (struct header *)p;
        uint32_t want = gens[i];
        int ok = h->magic == MAGIC && h->index == i && h->gen == want &&
                 h->check == check_of(i, want);
        if (ok) {
            body_of(i, want, buf);
            ok = memcmp(buf, p + sizeof(*h), PAGE - sizeof(*h)) == 0;
        } else if (h->magic == MAGIC && h->index == i && h->gen != want) {
            stale++;
        }
        if (!ok) {
            if (first == ~0ul) {
                first = i;
                first_got = h->gen;
                first_want = want;
            }
            bad++;
        }
    }
    if (bad)
        say("VERIFY FAIL %s bad=%lu stale=%lu pages=%lu first=%lu "
            "got_gen=%u want_gen=%u secs=%.2f", token, bad, stale, npages,
            first, first_got, first_want, now_s() - t0);
    else
        say("VERIFY OK %s pages=%lu secs=%.2f", token, npages, now_s() - t0);
}

static void parse_cmdline(void)
{
    char buf[4096];
    char *tok, *save = NULL;
    int fd = open("/proc/cmdline", O_RDONLY);
    ssize_t n;

    if (fd < 0)
        return;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = 0;
    for (tok = strtok_r(buf, " \n", &save); tok;
         tok = strtok_r(NULL, " \n", &save)) {
        if (!strncmp(tok, "dirtier.mem=", 12))
            opt_mem = strtoul(tok + 12, NULL, 10);
        else if (!strncmp(tok, "dirtier.hot=", 12))
            opt_hot = strtoul(tok + 12, NULL, 10);
        else if (!strncmp(tok, "dirtier.rate=", 13))
            opt_rate = strtoul(tok + 13, NULL, 10);
        else if (!strncmp(tok, "dirtier.seed=", 13))
            opt_seed = strtoul(tok + 13, NULL, 10);
        else if (!strncmp(tok, "dirtier.stat=", 13))
            opt_stat = strtoul(tok + 13, NULL, 10);
        else if (!strncmp(tok, "dirtier.pattern=", 16)) {
            const char *v = tok + 16;
            if (!strcmp(v, "zero"))
                opt_pattern = P_ZERO;
            else if (!strcmp(v, "small"))
                opt_pattern = P_SMALL;
            else if (!strcmp(v, "text"))
                opt_pattern = P_TEXT;
            else if (!strcmp(v, "random"))
                opt_pattern = P_RANDOM;
        }
    }
}

static void raw_tty(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) != 0)
        return;
    t.c_lflag &= ~(ICANON | ECHO | ECHONL | ISIG | IEXTEN);
    t.c_iflag &= ~(ICRNL | INLCR | IXON | IXOFF);
    t.c_oflag &= ~OPOST;
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    tcsetattr(fd, TCSANOW, &t);
}

static void handle_line(char *line, int *paused)
{
    if (!strncmp(line, "VERIFY", 6)) {
        const char *tok = line[6] == ' ' ? line + 7 : "-";
        verify(tok);
    } else if (!strcmp(line, "CORRUPT")) {
        /* Self-test of the checker: damage one byte behind its back. */
        unsigned long victim = npages / 2;
        mem[victim * PAGE + PAGE - 1] ^= 0x5a;
        say("CORRUPTED page=%lu", victim);
    } else if (!strncmp(line, "RATE ", 5)) {
        char *end;
        unsigned long rate = strtoul(line + 5, &end, 10);
        if (end != line + 5 && *end == 0)
            opt_rate = rate;
        say("RATE rate=%lu", opt_rate);
    } else if (!strcmp(line, "PAUSE")) {
        *paused = 1;
        say("PAUSED");
    } else if (!strcmp(line, "RESUME")) {
        *paused = 0;
        say("RESUMED");
    }
}

int main(int argc, char **argv)
{
    char inbuf[256];
    size_t inlen = 0;
    unsigned long cursor = 0, i, stride;
    uint64_t written = 0, written_at_stat = 0;
    double start, next_tick, next_stat, last_stat, credit = 0.0;
    int paused = 0;
    size_t bytes;

    parse_cmdline();
    if (argc >= 4 && !strcmp(argv[1], "--dump")) {
        /* Host-side check of a pattern: dirtier --dump PATTERN PAGES */
        static uint8_t page[PAGE];
        const char *v = argv[2];
        unsigned long k;
        opt_pattern = !strcmp(v, "zero") ? P_ZERO : !strcmp(v, "text") ?
            P_TEXT : !strcmp(v, "random") ? P_RANDOM : P_SMALL;
        for (k = 0; k < strtoul(argv[3], NULL, 10); k++) {
            memset(page, 0, sizeof(struct header));
            body_of((uint32_t)k, 1, page + sizeof(struct header));
            (void)!write(1, page, PAGE);
        }
        return 0;
    }
    raw_tty(0);
    npages = opt_mem * 1024 * 1024 / PAGE;
    nhot = opt_hot * 1024 * 1024 / PAGE;
    if (nhot > npages)
        nhot = npages;
    if (npages == 0)
        npages = 1;
    bytes = npages * PAGE;
    mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    gens = mmap(NULL, npages * sizeof(*gens), PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED || gens == MAP_FAILED) {
        say("ERROR mmap %lu MiB: %s", opt_mem, strerror(errno));
        return 1;
    }
    say("FILLING pages=%lu hot=%lu rate=%lu pattern=%d", npages, nhot,
        opt_rate, (int)opt_pattern);
    start = now_s();
    for (i = 0; i < npages; i++)
        write_page((uint32_t)i, 0);
    say("READY pages=%lu fill_secs=%.2f", npages, now_s() - start);

    /* Walk the hot set with a stride coprime to its size so consecutive
     * writes land far apart, like a real working set. */
    stride = 1;
    if (nhot > 1) {
        stride = 7919 % nhot;
        if (stride == 0)
            stride = 1;
        while (nhot % stride == 0 && stride > 1)
            stride--;
        {
            unsigned long a = nhot, b = stride;
            while (b) {
                unsigned long t = a % b;
                a = b;
                b = t;
            }
            if (a != 1)
                stride = 1;
        }
    }
    start = now_s();
    last_stat = start;
    next_tick = start;
    next_stat = start + opt_stat;
    for (;;) {
        double t = now_s();
        struct pollfd pfd = { .fd = 0, .events = POLLIN };
        int wait_ms, n;

        if (t >= next_tick) {
            /* Catch up at most one second of work per tick: a vCPU that
             * cannot keep up runs at its own pace instead of bursting. */
            credit += opt_rate * (t - next_tick + TICK_MS / 1000.0);
            if (credit > opt_rate)
                credit = opt_rate;
            next_tick = t + TICK_MS / 1000.0;
            if (!paused && nhot) {
                while (credit >= 1.0) {
                    uint32_t idx = (uint32_t)cursor;
                    write_page(idx, gens[idx] + 1);
                    cursor = (cursor + stride) % nhot;
                    credit -= 1.0;
                    written++;
                }
            } else {
                credit = 0;
            }
        }
        if (opt_stat && t >= next_stat) {
            say("STAT t=%.1f written=%llu rate=%.0f", t - start,
                (unsigned long long)written,
                (written - written_at_stat) / (t - last_stat));
            written_at_stat = written;
            last_stat = t;
            next_stat = t + opt_stat;
        }
        wait_ms = (int)((next_tick - now_s()) * 1000.0);
        if (wait_ms < 0)
            wait_ms = 0;
        n = poll(&pfd, 1, wait_ms);
        if (n > 0 && (pfd.revents & POLLIN)) {
            ssize_t r = read(0, inbuf + inlen, sizeof(inbuf) - 1 - inlen);
            if (r > 0) {
                size_t j, startl = 0;
                inlen += (size_t)r;
                for (j = 0; j < inlen; j++) {
                    if (inbuf[j] == '\n' || inbuf[j] == '\r') {
                        inbuf[j] = 0;
                        if (j > startl)
                            handle_line(inbuf + startl, &paused);
                        startl = j + 1;
                    }
                }
                memmove(inbuf, inbuf + startl, inlen - startl);
                inlen -= startl;
                if (inlen >= sizeof(inbuf) - 1)
                    inlen = 0;
            }
        }
    }
    return 0;
}
