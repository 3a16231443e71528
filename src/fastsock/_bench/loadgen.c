/*
 * loadgen.c -- the load generator (and trivial echo server) of the fastsock
 * benchmark.  Plain C, Linux, epoll, single-threaded.  Compiled on first use
 * by fastsock._bench.build with `cc -O2`; see that module.
 *
 *   loadgen client MODE [options]     MODE: echo | short | udp | stream
 *   loadgen serve [--udp] [options]   a trivial epoll echo server (calibration)
 *
 * Client modes
 *   echo    N persistent stream connections; each sends a line of S bytes
 *           (S-1 pattern bytes then '\n'), waits for the echo, verifies every
 *           byte and repeats.  --depth D keeps D lines in flight per
 *           connection (pipelining).
 *   short   N concurrent slots; each connects, sends one line, reads and
 *           verifies the echo, closes, and starts again.  Latency counts from
 *           the start of connect() to the last byte of the echo.
 *   udp     N connected UDP sockets, --depth D datagrams in flight on each
 *           (default 1); the datagram is a line starting with its
 *           16-hex-digit sequence number, the echo must be byte-identical and
 *           may come back in any order.  A datagram with no answer within
 *           --timeout counts as lost (an error) and its slot moves on.
 *           Replies are read with recvmmsg(); their successors go out in one
 *           UDP_SEGMENT (GSO) send per socket and wake-up where the kernel
 *           has it, else one sendmmsg().
 *   stream  like echo, with 1 KiB lines and 64 in flight per connection by
 *           default; reported as MiB/s of verified echo.
 *
 * Every run is bounded: a connect phase (persistent modes: until every
 * connection is established *and* has been answered once, at most
 * --connect-timeout), the warm-up, the measured window (--duration), then a
 * drain (no new requests; at most min(--timeout, 2 s)) so that connections
 * close cleanly, then exit.  A connection with work outstanding and no
 * progress for --timeout is closed and replaced: counted as an error if it had
 * been answered before, as a connect failure ("stalled_before_reply": the
 * kernel completed the handshake but the server never accepted/answered,
 * typically a full listen backlog) if it had not.
 * Output: one JSON object on stdout.  Only loopback and unix sockets.
 *
 * With --server-pid the client samples utime+stime of that process from
 * /proc/PID/stat at both ends of the measured window, so server CPU per
 * operation is measured over exactly the window the operations are counted in.
 * With --cpu N it also samples CPU N's busy share from /proc/stat over the
 * window ("client_core_busy_pct", interrupt and softirq time included): below
 * 100%, the client's core had time to spare, so the client was not what
 * limited the rate.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define PAT_LEN 65536u
#define MAX_SIZE 65536u
#define RBUF_LEN (256u * 1024u)
#define UDP_HDR 16

enum { M_ECHO, M_SHORT, M_UDP, M_STREAM };
enum { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };
enum { ST_IDLE, ST_BACKOFF, ST_CONNECTING, ST_OPEN };

static const char *mode_names[] = {"echo", "short", "udp", "stream"};

/* ------------------------------------------------------------------ utils */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static void die_errno(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void pin_cpu(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die_errno("sched_setaffinity");
}

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

/* --------------------------------------------------------------- address */

struct target {
    int family;                 /* AF_INET, AF_INET6, AF_UNIX */
    struct sockaddr_storage ss;
    socklen_t len;
    char desc[128];
};

static void make_target(struct target *t, const char *host, int port, const char *unix_path)
{
    memset(t, 0, sizeof *t);
    if (unix_path) {
        struct sockaddr_un *un = (struct sockaddr_un *)&t->ss;
        if (strlen(unix_path) >= sizeof un->sun_path)
            die("unix socket path too long");
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, unix_path);
        t->family = AF_UNIX;
        t->len = sizeof *un;
        snprintf(t->desc, sizeof t->desc, "unix:%s", unix_path);
        return;
    }
    if (!host || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_in *in4 = (struct sockaddr_in *)&t->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&t->ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
            die("only loopback addresses (127.0.0.0/8, ::1) are allowed");
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        t->family = AF_INET;
        t->len = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            die("only loopback addresses (127.0.0.0/8, ::1) are allowed");
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        t->family = AF_INET6;
        t->len = sizeof *in6;
    } else {
        die("host must be a numeric loopback address or 'localhost'");
    }
    snprintf(t->desc, sizeof t->desc, "%s:%d", host, port);
}

/* ------------------------------------------------------------- histogram */

/* Log-linear latency histogram in ns: exact below 64 ns, then 32 buckets
 * per power of two (relative error < 3.2%). */
#define H_SUB 32
#define H_MAXEXP 42
#define H_BUCKETS (64 + (H_MAXEXP - 6 + 1) * H_SUB)

struct hist {
    uint64_t b[H_BUCKETS];
    uint64_t count, sum, max;
};

static int h_index(uint64_t v)
{
    if (v < 64)
        return (int)v;
    int e = 63 - __builtin_clzll(v);
    if (e > H_MAXEXP)
        return H_BUCKETS - 1;
    int sub = (int)((v >> (e - 5)) & (H_SUB - 1));
    return 64 + (e - 6) * H_SUB + sub;
}

static double h_mid(int idx)
{
    if (idx < 64)
        return idx;
    int e = (idx - 64) / H_SUB + 6, sub = (idx - 64) % H_SUB;
    double width = (double)(1ull << (e - 5));
    return (double)(H_SUB + sub) * width + width / 2;
}

static void h_add(struct hist *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static double h_pct(const struct hist *h, double p)
{
    if (!h->count)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t acc = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= rank) {
            double m = h_mid(i);
            return m > (double)h->max ? (double)h->max : m;
        }
    }
    return (double)h->max;
}

/* --------------------------------------------------------------- pattern */

static unsigned char g_pat[PAT_LEN + MAX_SIZE];

static void make_pattern(void)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < sizeof g_pat; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        g_pat[i] = (unsigned char)alphabet[(x >> 29) & 63];
    }
}

/* Line `seq` of connection/slot `id` is g_pat[off .. off+S-2] then '\n'. */
static inline size_t line_off(uint32_t id, uint64_t seq)
{
    return (size_t)(((uint64_t)id * 4099u + seq * 131u) % PAT_LEN);
}

/* ----------------------------------------------------------------- state */

struct conn {
    int fd;
    uint32_t id;
    uint32_t gen;               /* bumped for every new socket: drops stale events */
    int state;
    uint32_t events;            /* registered epoll mask, 0 = not registered */
    uint64_t send_seq;          /* next line to queue */
    uint64_t recv_seq;          /* line being received */
    uint32_t recv_off;          /* bytes of it received so far */
    unsigned char *sbuf;        /* queued, not yet written bytes */
    size_t slen, soff;
    uint64_t *ts;               /* send time of the lines in flight (ring);
                                   udp: of each slot's datagram, 0 = none */
    uint64_t *useq;             /* udp: each slot's datagram in flight */
    int inflight;               /* udp: slots with a datagram in flight */
    uint64_t op_start;          /* short: connect start */
    uint64_t last_progress;
    uint64_t retry_at;
    int ever_connected;
    int started;                /* connect phase: this slot has been started */
    int replied;                /* this socket has received at least one echo */
};

struct opts {
    int mode;
    const char *host, *unix_path;
    int port;
    int conns, depth, cpu, burst;
    uint32_t size;
    double duration, warmup, timeout, connect_timeout;
    int server_pid;
};

struct stats {
    uint64_t ops, bytes;        /* measured window only */
    struct hist lat;
    uint64_t verified;          /* whole run */
    uint64_t mismatch, eof, reset, timeouts, udp_lost, other, unexpected;
    uint64_t connect_failures, udp_stale;
    uint64_t stalled;           /* accepted by the kernel, never answered in --timeout */
    uint64_t established;       /* distinct slots that connected at least once */
    uint64_t connects;          /* successful connects (short mode: one per op) */
};

static struct opts O;
static struct stats S;
static struct conn *C;
static int g_ep;
static int g_phase;
static struct target g_target;
static unsigned char *g_rbuf;
static uint64_t g_now;

static int measuring(void) { return g_phase == PH_MEASURE; }
static int issuing(void) { return g_phase < PH_DRAIN; }

static void ep_set(struct conn *c, uint32_t ev)
{
    if (ev == c->events)
        return;
    struct epoll_event e = {.events = ev,
                            .data = {.u64 = c->id | ((uint64_t)c->gen << 32)}};
    int op = c->events == 0 ? EPOLL_CTL_ADD : (ev == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    if (epoll_ctl(g_ep, op, c->fd, &e) != 0)
        die_errno("epoll_ctl");
    c->events = ev;
}

static void conn_close(struct conn *c)
{
    /* No EPOLL_CTL_DEL first: the fd is never duplicated, so close() takes it
     * out of the epoll set (one system call less per short connection); a
     * stale event for it is told apart by the generation in its data. */
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->events = 0;
    c->state = ST_IDLE;
    c->slen = c->soff = 0;
}

static void conn_backoff(struct conn *c, uint64_t delay_ns)
{
    conn_close(c);
    c->state = ST_BACKOFF;
    c->retry_at = g_now + delay_ns;
}

/* An established connection went wrong: count it, replace it. */
static void conn_fail(struct conn *c, uint64_t *counter)
{
    (*counter)++;
    conn_backoff(c, 1000000ull);   /* 1 ms */
}

static void count_io_error(struct conn *c, int err)
{
    if (err == ECONNRESET || err == EPIPE)
        conn_fail(c, &S.reset);
    else
        conn_fail(c, &S.other);
}

/* ------------------------------------------------------ stream transport */

static int flush_out(struct conn *c)
{
    while (c->soff < c->slen) {
        ssize_t n = send(c->fd, c->sbuf + c->soff, c->slen - c->soff, MSG_NOSIGNAL);
        if (n > 0) {
            c->soff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_set(c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        count_io_error(c, n < 0 ? errno : EPIPE);
        return -1;
    }
    c->slen = c->soff = 0;
    ep_set(c, EPOLLIN);
    return 0;
}

static void queue_line(struct conn *c)
{
    uint32_t sz = O.size;
    if (c->soff && c->slen + sz > (size_t)O.depth * sz) {
        memmove(c->sbuf, c->sbuf + c->soff, c->slen - c->soff);
        c->slen -= c->soff;
        c->soff = 0;
    }
    unsigned char *dst = c->sbuf + c->slen;
    memcpy(dst, g_pat + line_off(c->id, c->send_seq), sz - 1);
    dst[sz - 1] = '\n';
    c->slen += sz;
    c->ts[c->send_seq % (uint64_t)O.depth] = g_now;
    c->send_seq++;
}

/* Keep `depth` lines in flight (persistent modes), then write. */
static int top_up(struct conn *c)
{
    if (issuing())
        while (c->send_seq - c->recv_seq < (uint64_t)O.depth)
            queue_line(c);
    if (c->slen > c->soff)
        return flush_out(c);
    return 0;
}

static void start_connect(struct conn *c);
static void udp_start(struct conn *c);

static void on_connected(struct conn *c)
{
    c->state = ST_OPEN;
    c->last_progress = g_now;
    S.connects++;
    if (!c->ever_connected) {
        c->ever_connected = 1;
        S.established++;
    }
    if (O.mode == M_SHORT && c->send_seq == 0)
        queue_line(c);   /* (start_connect may have queued and sent it already) */
    ep_set(c, EPOLLIN);
    top_up(c);
}

/* Short connections: the client closes first, so every connection it made
 * in the last minute sits in TIME_WAIT on its side, and connect() has to find
 * a free (source address, source port) for the next one among them: with a
 * single source address, that search (__inet_hash_connect and
 * tcp_twsk_unique in a profile) took over a third of the load generator's
 * CPU and made it the bottleneck at ~14k connections/s.  When the target is
 * IPv4 loopback, each connection instead binds a source address of its own
 * from 127.0.0.2-127.0.0.251 in turn (IP_BIND_ADDRESS_NO_PORT: the port is
 * still chosen by connect()), so the TIME_WAIT sockets are spread over 250
 * addresses and the first port tried is almost always free.  Best effort:
 * on failure the kernel picks as before. */
static void spread_source(int fd)
{
    static unsigned next;
    struct sockaddr_in *t = (struct sockaddr_in *)&g_target.ss;
    if ((ntohl(t->sin_addr.s_addr) >> 24) != 127)
        return;
    int one = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0)
        return;
    struct sockaddr_in src;
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000002u + (next++ % 250u));
    (void)bind(fd, (struct sockaddr *)&src, sizeof src);
}

static void start_connect(struct conn *c)
{
    c->send_seq = c->recv_seq = 0;
    c->recv_off = 0;
    c->slen = c->soff = 0;
    c->events = 0;
    c->op_start = g_now;
    c->last_progress = g_now;
    c->replied = 0;
    c->gen++;
    int type = O.mode == M_UDP ? SOCK_DGRAM : SOCK_STREAM;
    c->fd = socket(g_target.family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        S.connect_failures++;
        c->fd = -1;
        conn_backoff(c, 10000000ull);
        return;
    }
    if (type == SOCK_STREAM && g_target.family != AF_UNIX && O.mode != M_SHORT) {
        /* (a short connection sends its one line first thing: Nagle never
         * holds it, and the system call is saved) */
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (O.mode == M_SHORT && g_target.family == AF_INET)
        spread_source(c->fd);
    int r;
    do
        r = connect(c->fd, (struct sockaddr *)&g_target.ss, g_target.len);
    while (r < 0 && errno == EINTR);
    if (r == 0) {
        if (O.mode == M_UDP) {
            c->state = ST_OPEN;
            if (!c->ever_connected) {
                c->ever_connected = 1;
                S.established++;
            }
            ep_set(c, EPOLLIN);
            udp_start(c);
            return;
        }
        on_connected(c);
        return;
    }
    if (errno == EINPROGRESS) {
        c->state = ST_CONNECTING;
        if (O.mode == M_SHORT) {
            /* On loopback the handshake has usually completed by the time
             * connect() returns: send the line at once, and wait for
             * EPOLLOUT only if the socket is still connecting (saves an
             * epoll_ctl and a wake-up per connection). */
            queue_line(c);
            ssize_t n = send(c->fd, c->sbuf, c->slen, MSG_NOSIGNAL);
            if (n > 0) {
                c->soff = (size_t)n;
                on_connected(c);
                return;
            }
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN
                    && errno != EINTR) {
                S.connect_failures++;
                conn_backoff(c, 10000000ull);
                return;
            }
        }
        ep_set(c, EPOLLOUT);
        return;
    }
    /* ECONNREFUSED, EAGAIN (unix backlog full), ... */
    S.connect_failures++;
    conn_backoff(c, 10000000ull);   /* 10 ms */
}

/* Verify received bytes against the expected line stream. */
static void on_stream_data(struct conn *c, const unsigned char *p, size_t n)
{
    uint32_t sz = O.size;
    c->last_progress = g_now;
    while (n > 0) {
        if (c->recv_seq >= c->send_seq) {
            conn_fail(c, &S.unexpected);
            return;
        }
        size_t off = line_off(c->id, c->recv_seq);
        size_t need = sz - c->recv_off;
        size_t take = n < need ? n : need;
        size_t body = take;
        int ends = (c->recv_off + take == sz);
        if (ends)
            body--;
        if ((body && memcmp(p, g_pat + off + c->recv_off, body) != 0) ||
            (ends && p[body] != '\n')) {
            conn_fail(c, &S.mismatch);
            return;
        }
        S.verified += take;
        c->recv_off += (uint32_t)take;
        p += take;
        n -= take;
        if (c->recv_off == sz) {
            if (measuring()) {
                uint64_t start = O.mode == M_SHORT ? c->op_start
                                 : c->ts[c->recv_seq % (uint64_t)O.depth];
                h_add(&S.lat, g_now - start);
                S.ops++;
                S.bytes += sz;
            }
            c->recv_seq++;
            c->recv_off = 0;
            c->replied = 1;
            if (O.mode == M_SHORT) {
                if (n) {
                    conn_fail(c, &S.unexpected);
                    return;
                }
                conn_close(c);
                if (issuing())
                    start_connect(c);
                return;
            }
        }
    }
    top_up(c);
}

static void on_stream_event(struct conn *c, uint32_t ev)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (!err && !(ev & EPOLLOUT))
            return;
        if (err) {
            S.connect_failures++;
            conn_backoff(c, 10000000ull);
            return;
        }
        on_connected(c);
        return;
    }
    if (c->state != ST_OPEN)
        return;
    if (ev & EPOLLOUT) {
        if (flush_out(c) < 0)
            return;
        if (c->state != ST_OPEN)
            return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (int rounds = 0; rounds < 4 && c->state == ST_OPEN; rounds++) {
            ssize_t n = recv(c->fd, g_rbuf, RBUF_LEN, 0);
            if (n > 0) {
                on_stream_data(c, g_rbuf, (size_t)n);
                if ((size_t)n < RBUF_LEN)
                    break;
                continue;
            }
            if (n == 0) {
                conn_fail(c, &S.eof);
                return;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            count_io_error(c, errno);
            return;
        }
    }
}

/* ----------------------------------------------------------------- udp */

/* UDP: each socket keeps --depth datagrams in flight, one per slot.  Slot j
 * of a socket carries the sequence numbers j, j+D, j+2D, ... (D = depth), so a
 * reply names its slot (seq % D) and replies may come back in any order.  The
 * datagram is the 16-hex-digit sequence number, then pattern bytes, then
 * '\n'; the expected echo is regenerated from the sequence number.  Replies
 * are read with recvmmsg() and the datagrams that replace them are sent with
 * one sendmmsg() per socket and wake-up: with several datagrams in flight per
 * socket, the client's system calls per datagram fall well below one. */

#define UDP_BATCH 64

static const char hexdig[] = "0123456789abcdef";
static struct mmsghdr g_smsg[UDP_BATCH], g_rmsg[UDP_BATCH];
static struct iovec g_siov[UDP_BATCH], g_riov[UDP_BATCH];
static unsigned char *g_usbuf, *g_urbuf;    /* UDP_BATCH datagrams each */
static int g_npend;                         /* datagrams queued in g_smsg */

/* Datagram `seq` of socket c: 16 hex digits, pattern bytes, '\n'. */
static void udp_fill(const struct conn *c, uint64_t seq, unsigned char *dst)
{
    uint32_t sz = O.size;
    uint64_t v = seq;
    for (int i = UDP_HDR - 1; i >= 0; i--) {
        dst[i] = (unsigned char)hexdig[v & 15];
        v >>= 4;
    }
    memcpy(dst + UDP_HDR, g_pat + line_off(c->id, seq), sz - UDP_HDR - 1);
    dst[sz - 1] = '\n';
}

/* The sequence number in a reply's header; -1 unless 16 lower-case hex
 * digits (so a valid header is exactly the one udp_fill wrote). */
static int64_t udp_seq(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < UDP_HDR; i++) {
        unsigned char ch = p[i];
        unsigned d;
        if (ch >= '0' && ch <= '9') d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') d = (unsigned)(ch - 'a' + 10);
        else return -1;
        v = (v << 4) | d;
    }
    return v > (uint64_t)INT64_MAX ? -1 : (int64_t)v;
}

/* UDP generic segmentation offload: one sendmsg() with UDP_SEGMENT hands the
 * kernel n equal-sized datagrams as one buffer; it goes through the IP stack
 * and loopback as one packet and is cut into n datagrams when it is
 * delivered to the server's socket (which receives n ordinary datagrams,
 * queued at once, as with n back-to-back sends).  It takes the client's cost
 * per datagram down to a fraction: without it, the loopback send path (run on
 * the client's core, including the delivery into the server's socket) is
 * most of the client's CPU and the client the limit on UDP echo.  Used when
 * the kernel has it; else sendmmsg(). */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 60000
static int g_gso = 1;

static int gso_sendto(int fd, unsigned char *buf, int n, uint32_t size,
                      void *addr, socklen_t alen)
{
    union { char b[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {.iov_base = buf, .iov_len = (size_t)n * size};
    struct msghdr mh = {.msg_name = addr, .msg_namelen = alen,
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)size;
    memcpy(CMSG_DATA(cm), &seg, sizeof seg);
    ssize_t r;
    do
        r = sendmsg(fd, &mh, 0);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -1 : 0;
}

/* A UDP socket failed with errno: refused (no server: ICMP port
 * unreachable) counts as a connect failure, anything else as "other"; the
 * socket is replaced after 10 ms. */
static void udp_socket_error(struct conn *c)
{
    if (errno == ECONNREFUSED)
        S.connect_failures++;
    else
        S.other++;
    conn_backoff(c, 10000000ull);
}

/* Send the queued datagrams of c.  A datagram the kernel would not take
 * (EAGAIN, ENOBUFS) is lost: its slot times out and moves on. */
static void udp_flush(struct conn *c)
{
    int off = 0, n = g_npend;
    g_npend = 0;
    /* the queued datagrams sit back to back in g_usbuf */
    while (g_gso && off < n && n - off > 1) {
        int k = n - off;
        if (k > GSO_MAX_SEGS) k = GSO_MAX_SEGS;
        if ((size_t)k * O.size > GSO_MAX_BYTES) k = (int)(GSO_MAX_BYTES / O.size);
        if (k < 2)
            break;
        if (gso_sendto(c->fd, g_usbuf + (size_t)off * O.size, k, O.size, NULL, 0) == 0) {
            off += k;
            continue;
        }
        if (errno == EINVAL || errno == EOPNOTSUPP || errno == ENOPROTOOPT || errno == EIO) {
            g_gso = 0;              /* no GSO here: sendmmsg from now on */
            break;
        }
        goto failed;
    }
    while (off < n) {
        int r = sendmmsg(c->fd, g_smsg + off, (unsigned)(n - off), 0);
        if (r > 0) {
            off += r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        goto failed;
    }
    return;
failed:
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
        return;
    udp_socket_error(c);
}

/* Put the next datagram of slot j in flight (or retire the slot once the
 * run stops issuing). */
static void udp_issue(struct conn *c, int j)
{
    if (!issuing())
        return;
    c->ts[j] = g_now;
    c->inflight++;
    unsigned char *dst = g_usbuf + (size_t)g_npend * O.size;
    udp_fill(c, c->useq[j], dst);
    g_siov[g_npend].iov_base = dst;
    g_siov[g_npend].iov_len = O.size;
    g_npend++;
    if (g_npend == UDP_BATCH)
        udp_flush(c);
}

/* A slot's datagram is answered or given up on: on to its next number. */
static void udp_next(struct conn *c, int j)
{
    c->ts[j] = 0;
    c->inflight--;
    c->useq[j] += (uint64_t)O.depth;
}

/* A (re)connected socket: every slot starts afresh. */
static void udp_start(struct conn *c)
{
    c->inflight = 0;
    for (int j = 0; j < O.depth; j++) {
        c->ts[j] = 0;
        c->useq[j] = (uint64_t)j;
    }
    for (int j = 0; j < O.depth && c->state == ST_OPEN; j++)
        udp_issue(c, j);
    if (g_npend && c->state == ST_OPEN)
        udp_flush(c);
    g_npend = 0;
}

static void on_udp_event(struct conn *c)
{
    int D = O.depth;
    for (;;) {
        for (int k = 0; k < UDP_BATCH; k++)
            g_rmsg[k].msg_hdr.msg_flags = 0;
        int r = recvmmsg(c->fd, g_rmsg, UDP_BATCH, 0, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            udp_socket_error(c);
            g_npend = 0;
            return;
        }
        for (int k = 0; k < r; k++) {
            const unsigned char *p = g_riov[k].iov_base;
            size_t n = g_rmsg[k].msg_len;
            int64_t seq = n >= UDP_HDR ? udp_seq(p) : -1;
            if (seq < 0 || (g_rmsg[k].msg_hdr.msg_flags & MSG_TRUNC)) {
                S.mismatch++;
                continue;
            }
            int j = (int)((uint64_t)seq % (uint64_t)D);
            if (c->ts[j] == 0 || (uint64_t)seq < c->useq[j]) {
                S.udp_stale++;          /* answer to a datagram given up on */
                continue;
            }
            if ((uint64_t)seq != c->useq[j] || n != O.size || p[n - 1] != '\n' ||
                memcmp(p + UDP_HDR, g_pat + line_off(c->id, (uint64_t)seq),
                       n - UDP_HDR - 1) != 0) {
                S.mismatch++;           /* the slot times out and moves on */
                continue;
            }
            S.verified += n;
            if (measuring()) {
                h_add(&S.lat, g_now - c->ts[j]);
                S.ops++;
                S.bytes += n;
            }
            c->replied = 1;
            c->last_progress = g_now;
            udp_next(c, j);
            udp_issue(c, j);
            if (c->state != ST_OPEN) {
                g_npend = 0;
                return;
            }
        }
        /* A short batch means the queue is empty: no recvmmsg() that could
         * only say EAGAIN (the epoll set is level-triggered). */
        if (r < UDP_BATCH)
            break;
    }
    if (g_npend)
        udp_flush(c);
}

/* --------------------------------------------------------- bookkeeping */

static int outstanding(const struct conn *c)
{
    switch (O.mode) {
    case M_UDP:
        return c->state == ST_OPEN && c->inflight > 0;
    case M_SHORT:
        return c->state == ST_CONNECTING || c->state == ST_OPEN;
    default:
        return c->state == ST_CONNECTING ||
               (c->state == ST_OPEN && c->send_seq != c->recv_seq);
    }
}

static void check_timers(void)
{
    uint64_t tmo = (uint64_t)(O.timeout * 1e9);
    for (int i = 0; i < O.conns; i++) {
        struct conn *c = &C[i];
        if (c->state == ST_BACKOFF) {
            if (g_now >= c->retry_at && issuing())
                start_connect(c);
            continue;
        }
        if (O.mode == M_UDP) {
            /* each slot on its own: the others may well be answered */
            for (int j = 0; j < O.depth && c->state == ST_OPEN; j++) {
                if (c->ts[j] && g_now - c->ts[j] >= tmo) {
                    S.udp_lost++;
                    udp_next(c, j);
                    udp_issue(c, j);
                }
            }
            if (g_npend && c->state == ST_OPEN)
                udp_flush(c);
            g_npend = 0;
            continue;
        }
        if (!outstanding(c) || g_now - c->last_progress < tmo)
            continue;
        if (c->state == ST_CONNECTING) {
            S.connect_failures++;
            conn_backoff(c, 0);
        } else if (!c->replied) {
            /* The client's connect() completed but the server never answered:
               almost always a full accept queue (listen backlog) dropping the
               handshake's last ACK.  A connect problem, not a data error. */
            S.connect_failures++;
            S.stalled++;
            conn_backoff(c, 0);
        } else {
            conn_fail(c, &S.timeouts);
        }
    }
}

/* Persistent modes: every connection is established AND has been served. */
static int all_ready(void)
{
    for (int i = 0; i < O.conns; i++)
        if (C[i].state != ST_OPEN || !C[i].replied)
            return 0;
    return 1;
}

/* Connect phase of persistent modes: keep at most --connect-burst (default
 * 4, below socketserver's default backlog of 5) connections in their
 * handshake / first exchange at a time, so N connections are opened at the
 * pace the server accepts them instead of as one SYN storm (which a listen
 * backlog < N turns into 1-3 s SYN/ACK retransmission stalls).  The measured
 * window is about N established connections, not about connecting. */
static void ramp(int all)
{
    int pending = 0;
    for (int i = 0; i < O.conns; i++)
        if (C[i].started && !(C[i].state == ST_OPEN && C[i].replied))
            pending++;
    for (int i = 0; i < O.conns && (all || pending < O.burst); i++) {
        if (C[i].started)
            continue;
        C[i].started = 1;
        pending++;
        start_connect(&C[i]);
    }
}

static int count_ready(void)
{
    int n = 0;
    for (int i = 0; i < O.conns; i++)
        n += C[i].state == ST_OPEN && C[i].replied;
    return n;
}

static int any_outstanding(void)
{
    for (int i = 0; i < O.conns; i++)
        if (outstanding(&C[i]))
            return 1;
    return 0;
}

/* utime+stime of a process in clock ticks, -1 if unavailable. */
static long long proc_ticks(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
       majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* Busy and total jiffies of one CPU from /proc/stat (busy: everything but
 * idle and iowait, so interrupt and softirq work is in it, which on loopback
 * is much of the network stack's work); 0 on success. */
static int core_ticks(int cpu, unsigned long long *busy, unsigned long long *total)
{
    if (cpu < 0)
        return -1;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[512], want[32];
    int wl = snprintf(want, sizeof want, "cpu%d ", cpu);
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, want, (size_t)wl) != 0)
            continue;
        unsigned long long v[8] = {0};
        if (sscanf(line + wl, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) >= 4) {
            *total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
            *busy = *total - v[3] - v[4];
            rc = 0;
        }
        break;
    }
    fclose(f);
    return rc;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------- client */

static double argd(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0)
        die("bad number");
    return v;
}

static int run_client(int argc, char **argv)
{
    if (argc < 3)
        die("usage: loadgen client echo|short|udp|stream [options]");
    const char *m = argv[2];
    if (!strcmp(m, "echo")) O.mode = M_ECHO;
    else if (!strcmp(m, "short")) O.mode = M_SHORT;
    else if (!strcmp(m, "udp")) O.mode = M_UDP;
    else if (!strcmp(m, "stream")) O.mode = M_STREAM;
    else die("unknown mode");
    O.host = "127.0.0.1";
    O.port = 0;
    O.conns = 1;
    O.depth = O.mode == M_STREAM ? 64 : 1;
    O.size = O.mode == M_STREAM ? 1024 : 64;
    O.duration = 2;
    O.warmup = 0.5;
    O.timeout = 2;
    O.connect_timeout = 5;
    O.cpu = -1;
    O.burst = 4;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("option needs a value");
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) O.host = v;
        else if (!strcmp(a, "--port")) O.port = atoi(v);
        else if (!strcmp(a, "--unix")) O.unix_path = v;
        else if (!strcmp(a, "--conns")) O.conns = atoi(v);
        else if (!strcmp(a, "--size")) O.size = (uint32_t)atoi(v);
        else if (!strcmp(a, "--depth")) O.depth = atoi(v);
        else if (!strcmp(a, "--duration")) O.duration = argd(v);
        else if (!strcmp(a, "--warmup")) O.warmup = argd(v);
        else if (!strcmp(a, "--timeout")) O.timeout = argd(v);
        else if (!strcmp(a, "--connect-timeout")) O.connect_timeout = argd(v);
        else if (!strcmp(a, "--cpu")) O.cpu = atoi(v);
        else if (!strcmp(a, "--server-pid")) O.server_pid = atoi(v);
        else if (!strcmp(a, "--connect-burst")) O.burst = atoi(v);
        else die("unknown option");
    }
    if (O.burst < 1) die("--connect-burst must be >= 1");
    if (O.conns < 1 || O.conns > 60000) die("--conns out of range");
    if (O.depth < 1 || O.depth > 4096) die("--depth out of range");
    if (O.mode == M_SHORT) O.depth = 1;
    uint32_t min_size = O.mode == M_UDP ? UDP_HDR + 2 : 2;
    if (O.size < min_size || O.size > MAX_SIZE) die("--size out of range");
    if (O.mode == M_UDP && O.unix_path) die("udp mode is AF_INET/AF_INET6 only");
    if (O.timeout <= 0) die("--timeout must be > 0");
    pin_cpu(O.cpu);
    make_target(&g_target, O.host, O.port, O.unix_path);
    make_pattern();

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);   /* runner gone: stop (and report) now */
    if (getppid() != parent)
        g_stop = 1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    g_rbuf = malloc(RBUF_LEN);
    if (O.mode == M_UDP) {
        /* recvmmsg/sendmmsg vectors: one datagram per entry; a reply longer
         * than --size is caught by MSG_TRUNC (or its length) */
        g_usbuf = malloc((size_t)UDP_BATCH * O.size);
        g_urbuf = malloc((size_t)UDP_BATCH * (O.size + 1));
        if (!g_usbuf || !g_urbuf) die("out of memory");
        for (int k = 0; k < UDP_BATCH; k++) {
            g_smsg[k].msg_hdr.msg_iov = &g_siov[k];
            g_smsg[k].msg_hdr.msg_iovlen = 1;
            g_riov[k].iov_base = g_urbuf + (size_t)k * (O.size + 1);
            g_riov[k].iov_len = O.size + 1;
            g_rmsg[k].msg_hdr.msg_iov = &g_riov[k];
            g_rmsg[k].msg_hdr.msg_iovlen = 1;
        }
    }
    C = calloc((size_t)O.conns, sizeof *C);
    if (!g_rbuf || !C) die("out of memory");
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) die_errno("epoll_create1");

    uint64_t t_start = now_ns();
    g_now = t_start;
    for (int i = 0; i < O.conns; i++) {
        struct conn *c = &C[i];
        c->id = (uint32_t)i;
        c->fd = -1;
        c->sbuf = malloc((size_t)O.depth * O.size + 1);
        c->ts = calloc((size_t)O.depth, sizeof *c->ts);
        c->useq = calloc((size_t)O.depth, sizeof *c->useq);
        if (!c->sbuf || !c->ts || !c->useq) die("out of memory");
    }

    int persistent = O.mode == M_ECHO || O.mode == M_STREAM;
    g_phase = persistent ? PH_CONNECT : PH_WARMUP;
    uint64_t connect_deadline = t_start + (uint64_t)(O.connect_timeout * 1e9);
    uint64_t warm_end = 0, measure_start = 0, measure_end = 0, drain_deadline = 0;
    double connect_phase_s = 0;
    int ready_at_start = O.conns;
    if (!persistent)
        warm_end = t_start + (uint64_t)(O.warmup * 1e9);
    long long ticks0 = -1, ticks1 = -1;
    unsigned long long cb0 = 0, ct0 = 0, cb1 = 0, ct1 = 0;
    int core_ok = 0;
    double cpu0 = 0, cpu1 = 0;
    int interrupted = 0, drained = 0;

    if (persistent) {
        ramp(0);
    } else {
        for (int i = 0; i < O.conns; i++) {
            C[i].started = 1;
            start_connect(&C[i]);
        }
    }

    struct epoll_event evs[256];
    uint64_t next_timer = t_start;
    while (g_phase != PH_DONE) {
        g_now = now_ns();
        if (g_stop && !interrupted) {
            interrupted = 1;
            if (g_phase == PH_MEASURE) {
                measure_end = g_now;
                ticks1 = proc_ticks(O.server_pid);
                cpu1 = self_cpu_s();
                core_ok = core_ok && core_ticks(O.cpu, &cb1, &ct1) == 0 && ct1 > ct0;
            }
            g_phase = PH_DONE;
            break;
        }
        switch (g_phase) {
        case PH_CONNECT:
            ramp(0);
            if (all_ready() || g_now >= connect_deadline) {
                connect_phase_s = (g_now - t_start) / 1e9;
                ready_at_start = count_ready();
                ramp(1);            /* deadline: start whatever is left */
                g_phase = PH_WARMUP;
                warm_end = g_now + (uint64_t)(O.warmup * 1e9);
            }
            break;
        case PH_WARMUP:
            if (g_now >= warm_end) {
                memset(&S.lat, 0, sizeof S.lat);
                S.ops = S.bytes = 0;
                g_phase = PH_MEASURE;
                measure_start = g_now;
                ticks0 = proc_ticks(O.server_pid);
                cpu0 = self_cpu_s();
                core_ok = core_ticks(O.cpu, &cb0, &ct0) == 0;
            }
            break;
        case PH_MEASURE:
            if (g_now - measure_start >= (uint64_t)(O.duration * 1e9)) {
                measure_end = g_now;
                ticks1 = proc_ticks(O.server_pid);
                cpu1 = self_cpu_s();
                core_ok = core_ok && core_ticks(O.cpu, &cb1, &ct1) == 0 && ct1 > ct0;
                g_phase = PH_DRAIN;
                double d = O.timeout < 2 ? O.timeout : 2;
                drain_deadline = g_now + (uint64_t)(d * 1e9);
            }
            break;
        case PH_DRAIN:
            if (!any_outstanding()) {
                drained = 1;
                g_phase = PH_DONE;
            } else if (g_now >= drain_deadline) {
                g_phase = PH_DONE;
            }
            break;
        }
        if (g_phase == PH_DONE)
            break;
        if (g_now >= next_timer) {
            check_timers();
            next_timer = g_now + 10000000ull;   /* 10 ms */
        }
        int n = epoll_wait(g_ep, evs, 256, 5);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die_errno("epoll_wait");
        }
        g_now = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = &C[(uint32_t)evs[i].data.u64];
            if (c->fd < 0 || (uint32_t)(evs[i].data.u64 >> 32) != c->gen)
                continue;
            if (O.mode == M_UDP)
                on_udp_event(c);
            else
                on_stream_event(c, evs[i].events);
        }
    }
    if (measure_end == 0) {
        /* interrupted before the window closed */
        measure_end = g_now;
        if (measure_start == 0)
            measure_start = g_now;
    }

    int open_at_end = 0;
    for (int i = 0; i < O.conns; i++) {
        if (C[i].state == ST_OPEN)
            open_at_end++;
        conn_close(&C[i]);
    }
    close(g_ep);

    double secs = (measure_end - measure_start) / 1e9;
    long clk = sysconf(_SC_CLK_TCK);
    double srv_cpu = (ticks0 >= 0 && ticks1 >= 0) ? (double)(ticks1 - ticks0) / clk : -1;
    uint64_t errors = S.mismatch + S.eof + S.reset + S.timeouts + S.udp_lost +
                      S.other + S.unexpected;
    printf("{\"client\": \"c\", \"mode\": \"%s\", \"target\": \"%s\", "
           "\"conns\": %d, \"size\": %u, \"depth\": %d, "
           "\"duration_s\": %.6f, \"warmup_s\": %.3f, \"connect_phase_s\": %.6f, "
           "\"ops\": %llu, \"ops_per_s\": %.3f, \"bytes\": %llu, \"mib_per_s\": %.4f, "
           "\"verified_bytes\": %llu, ",
           mode_names[O.mode], g_target.desc, O.conns, O.size, O.depth,
           secs, O.warmup, connect_phase_s,
           (unsigned long long)S.ops, secs > 0 ? S.ops / secs : 0.0,
           (unsigned long long)S.bytes, secs > 0 ? S.bytes / secs / 1048576.0 : 0.0,
           (unsigned long long)S.verified);
    printf("\"lat_us\": {\"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f, \"max\": %.2f, "
           "\"mean\": %.2f}, ",
           h_pct(&S.lat, 0.50) / 1e3, h_pct(&S.lat, 0.90) / 1e3,
           h_pct(&S.lat, 0.99) / 1e3, S.lat.max / 1e3,
           S.lat.count ? (double)S.lat.sum / S.lat.count / 1e3 : 0.0);
    printf("\"errors\": %llu, \"error_detail\": {\"mismatch\": %llu, \"eof\": %llu, "
           "\"reset\": %llu, \"timeout\": %llu, \"udp_lost\": %llu, \"unexpected\": %llu, "
           "\"other\": %llu}, \"udp_stale\": %llu, "
           "\"connect_failures\": %llu, \"stalled_before_reply\": %llu, "
           "\"connections_ready_at_start\": %d, \"connections_established\": %llu, "
           "\"connects\": %llu, \"open_at_end\": %d, \"drained\": %s, \"interrupted\": %s, ",
           (unsigned long long)errors, (unsigned long long)S.mismatch,
           (unsigned long long)S.eof, (unsigned long long)S.reset,
           (unsigned long long)S.timeouts, (unsigned long long)S.udp_lost,
           (unsigned long long)S.unexpected, (unsigned long long)S.other,
           (unsigned long long)S.udp_stale, (unsigned long long)S.connect_failures,
           (unsigned long long)S.stalled, ready_at_start,
           (unsigned long long)S.established, (unsigned long long)S.connects,
           open_at_end, drained ? "true" : "false", interrupted ? "true" : "false");
    if (srv_cpu >= 0)
        printf("\"server_pid\": %d, \"server_cpu_s\": %.4f, \"server_cpu_pct\": %.2f, "
               "\"server_cpu_us_per_op\": %.4f, ",
               O.server_pid, srv_cpu, secs > 0 ? 100 * srv_cpu / secs : 0.0,
               S.ops ? srv_cpu * 1e6 / S.ops : 0.0);
    else
        printf("\"server_pid\": %d, \"server_cpu_s\": null, \"server_cpu_pct\": null, "
               "\"server_cpu_us_per_op\": null, ", O.server_pid);
    if (core_ok)
        printf("\"client_core_busy_pct\": %.2f, ", 100.0 * (double)(cb1 - cb0) / (double)(ct1 - ct0));
    else
        printf("\"client_core_busy_pct\": null, ");
    printf("\"client_cpu_pct\": %.2f, \"clk_tck\": %ld, \"cpu\": %d}\n",
           secs > 0 ? 100 * (cpu1 - cpu0) / secs : 0.0, clk, O.cpu);
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------------- server */

struct sconn {
    int fd;
    uint32_t events;
    unsigned char *buf;
    size_t len, off;
};

static int run_server(int argc, char **argv)
{
    const char *host = "127.0.0.1", *unix_path = NULL;
    int port = 0, udp = 0, cpu = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--udp")) { udp = 1; continue; }
        if (i + 1 >= argc)
            die("option needs a value");
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--unix")) unix_path = v;
        else if (!strcmp(a, "--cpu")) cpu = atoi(v);
        else die("unknown option");
    }
    pin_cpu(cpu);
    signal(SIGPIPE, SIG_IGN);
    /* Die with the runner that started us: never leave an orphan server. */
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        return 0;
    struct target t;
    make_target(&t, host, port, unix_path);
    int ls = socket(t.family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (ls < 0) die_errno("socket");
    int one = 1;
    if (t.family != AF_UNIX)
        setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&t.ss, t.len) != 0) die_errno("bind");
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(ls, (struct sockaddr *)&bound, &blen);
    int bport = 0;
    if (t.family == AF_INET) bport = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    if (t.family == AF_INET6) bport = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);

    if (udp) {
        printf("READY {\"host\": \"%s\", \"port\": %d, \"impl\": \"c-echo\", "
               "\"server\": \"loadgen serve --udp (recvmmsg/sendmmsg)\"}\n",
               host, bport);
        fflush(stdout);
        /* Block for the first datagram, take whatever else is queued (up to
         * 64), echo them to their senders. */
        static struct mmsghdr msgs[64];
        static struct iovec iov[64];
        static struct sockaddr_storage from[64];
        unsigned char *buf = malloc((size_t)64 * 65536);
        unsigned char *stage = malloc(GSO_MAX_BYTES);
        int gso = 1;
        if (!buf || !stage) die("out of memory");
        for (int k = 0; k < 64; k++) {
            iov[k].iov_base = buf + (size_t)k * 65536;
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            msgs[k].msg_hdr.msg_name = &from[k];
        }
        for (;;) {
            for (int k = 0; k < 64; k++) {
                iov[k].iov_len = 65536;
                msgs[k].msg_hdr.msg_namelen = sizeof from[k];
            }
            int n = recvmmsg(ls, msgs, 64, MSG_WAITFORONE, NULL);
            if (n < 0) {
                if (errno == EINTR) continue;
                die_errno("recvmmsg");
            }
            for (int k = 0; k < n; k++)
                iov[k].iov_len = msgs[k].msg_len;
            /* A run of equal-sized datagrams from one peer goes back as one
             * GSO send (see the client's udp_flush); the rest with sendmmsg. */
            int k = 0;
            while (k < n) {
                int e = k + 1;
                while (gso && e < n && e - k < GSO_MAX_SEGS &&
                       (size_t)(e - k + 1) * iov[k].iov_len <= GSO_MAX_BYTES &&
                       iov[e].iov_len == iov[k].iov_len &&
                       msgs[e].msg_hdr.msg_namelen == msgs[k].msg_hdr.msg_namelen &&
                       !memcmp(&from[e], &from[k], msgs[k].msg_hdr.msg_namelen))
                    e++;
                if (e - k > 1) {
                    size_t len = iov[k].iov_len;
                    for (int q = k; q < e; q++)
                        memcpy(stage + (size_t)(q - k) * len, iov[q].iov_base, len);
                    if (gso_sendto(ls, stage, e - k, (uint32_t)len, &from[k],
                                   msgs[k].msg_hdr.msg_namelen) == 0) {
                        k = e;
                        continue;
                    }
                    if (errno == EINVAL || errno == EOPNOTSUPP || errno == ENOPROTOOPT ||
                            errno == EIO)
                        gso = 0;
                    else {
                        k = e;          /* dropped, as a refused sendto would be */
                        continue;
                    }
                }
                int w = sendmmsg(ls, msgs + k, 1, 0);
                if (w < 0 && errno == EINTR)
                    continue;
                k++;
            }
        }
    }

    if (listen(ls, 1024) != 0) die_errno("listen");
    fcntl(ls, F_SETFL, O_NONBLOCK);
    if (unix_path)
        printf("READY {\"unix\": \"%s\", \"impl\": \"c-echo\", "
               "\"server\": \"loadgen serve (epoll echo)\"}\n", unix_path);
    else
        printf("READY {\"host\": \"%s\", \"port\": %d, \"impl\": \"c-echo\", "
               "\"server\": \"loadgen serve (epoll echo)\"}\n", host, bport);
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data = {.ptr = NULL}};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die_errno("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct sconn *s = evs[i].data.ptr;
            if (!s) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    if (t.family != AF_UNIX)
                        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    s = calloc(1, sizeof *s);
                    s->fd = fd;
                    s->buf = malloc(65536);
                    s->events = EPOLLIN;
                    struct epoll_event ce = {.events = EPOLLIN, .data = {.ptr = s}};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            int dead = 0;
            if (s->len > s->off) {          /* pending output: finish it first */
                ssize_t w = send(s->fd, s->buf + s->off, s->len - s->off, MSG_NOSIGNAL);
                if (w > 0) s->off += (size_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR) dead = 1;
            } else {
                ssize_t r = recv(s->fd, s->buf, 65536, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    dead = 1;
                } else if (r > 0) {
                    s->len = (size_t)r;
                    s->off = 0;
                    ssize_t w = send(s->fd, s->buf, s->len, MSG_NOSIGNAL);
                    if (w > 0) s->off = (size_t)w;
                    else if (w < 0 && errno != EAGAIN && errno != EINTR) dead = 1;
                }
            }
            if (dead) {
                close(s->fd);
                free(s->buf);
                free(s);
                continue;
            }
            if (s->off >= s->len)
                s->off = s->len = 0;
            uint32_t want = s->len ? EPOLLOUT : EPOLLIN;
            if (want != s->events) {
                struct epoll_event ce = {.events = want, .data = {.ptr = s}};
                epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ce);
                s->events = want;
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "client"))
        return run_client(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "serve"))
        return run_server(argc, argv);
    fprintf(stderr,
            "usage: loadgen client echo|short|udp|stream [--host H --port P | --unix PATH]\n"
            "         [--conns N] [--size S] [--depth D] [--duration SEC] [--warmup SEC]\n"
            "         [--timeout SEC] [--connect-timeout SEC] [--connect-burst N] [--cpu N]\n"
            "         [--server-pid PID]\n"
            "       loadgen serve [--udp] [--host H] [--port P | --unix PATH] [--cpu N]\n");
    return 2;
}
