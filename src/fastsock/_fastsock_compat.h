/* Small portability layer for fastsock._core (C only, apart from the
   socket object layout at the end). */
#ifndef FASTSOCK_COMPAT_H
#define FASTSOCK_COMPAT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1  /* recvmmsg, accept4 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

/* Give the C heap's free pages back to the system: glibc's malloc_trim(0),
   which also releases free pages inside its arenas.  1 if memory was
   released, 0 if none (or not glibc), -1 where there is no such call. */
#if defined(__GLIBC__)
#include <malloc.h>
static int fs_heap_trim(void) { return malloc_trim(0) ? 1 : 0; }
#else
static int fs_heap_trim(void) { return -1; }
#endif

/* No SIGPIPE from send() where the flag exists; elsewhere the process is
   expected to ignore SIGPIPE, as CPython does at startup. */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* Open the read and write ends of a wakeup channel: one eventfd on Linux
   (rfd == wfd), a pipe elsewhere.  Both ends are non-blocking and
   close-on-exec.  Returns 0, or -1 with errno set. */
static int fs_waker_open(int *rfd, int *wfd)
{
#ifdef __linux__
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -1;
    *rfd = *wfd = fd;
    return 0;
#else
    int fds[2], i;
    if (pipe(fds) < 0)
        return -1;
    for (i = 0; i < 2; i++) {
        if (fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0 ||
            fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK) < 0) {
            int saved = errno;
            close(fds[0]);
            close(fds[1]);
            errno = saved;
            return -1;
        }
    }
    *rfd = fds[0];
    *wfd = fds[1];
    return 0;
#endif
}

/* Post one wake-up.  A full channel (EAGAIN) already means "woken". */
static int fs_waker_post(int wfd)
{
#ifdef __linux__
    uint64_t one = 1;
    if (write(wfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        return -1;
#else
    char byte = 1;
    if (write(wfd, &byte, 1) < 0 && errno != EAGAIN)
        return -1;
#endif
    return 0;
}

/* Consume all pending wake-ups. */
static void fs_waker_drain(int rfd)
{
    char buf[64];
    while (read(rfd, buf, sizeof(buf)) > 0)
        ;
}

/* accept() whose new descriptor is close-on-exec, like Python's, and with
   nonblock also in non-blocking mode (O_NONBLOCK). */
static int fs_accept_flags(int fd, struct sockaddr *addr, socklen_t *len, int nonblock)
{
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
    return accept4(fd, addr, len, SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0));
#else
    int cfd = accept(fd, addr, len);
    if (cfd >= 0 && (fcntl(cfd, F_SETFD, FD_CLOEXEC) < 0
                     || (nonblock && fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK) < 0))) {
        int saved = errno;
        close(cfd);
        errno = saved;
        return -1;
    }
    return cfd;
#endif
}

/* Receive up to vlen datagrams without blocking: recvmmsg() where the
   platform has it, else a loop of recvfrom().  Each datagram lands in
   buf + i * size (truncated to size), its length in lens[i], its source in
   addrs[i] / addrlens[i].  Returns the count (>= 1), or -1 with errno set
   (EAGAIN: none was waiting). */
static int fs_recv_batch(int fd, char *buf, size_t size, unsigned int vlen,
                         struct sockaddr_storage *addrs, socklen_t *addrlens,
                         size_t *lens)
{
    unsigned int i;
#if defined(__linux__)
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    int n;
    if (vlen > 64)
        vlen = 64;
    for (i = 0; i < vlen; i++) {
        iov[i].iov_base = buf + (size_t)i * size;
        iov[i].iov_len = size;
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(addrs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    n = recvmmsg(fd, msgs, vlen, MSG_DONTWAIT, NULL);
    for (i = 0; n > 0 && i < (unsigned int)n; i++) {
        lens[i] = msgs[i].msg_len;
        addrlens[i] = msgs[i].msg_hdr.msg_namelen;
    }
    return n;
#else
    for (i = 0; i < vlen; i++) {
        ssize_t r;
        addrlens[i] = sizeof(addrs[i]);
        r = recvfrom(fd, buf + (size_t)i * size, size, MSG_DONTWAIT,
                     (struct sockaddr *)&addrs[i], &addrlens[i]);
        if (r < 0)
            return i ? (int)i : -1;
        lens[i] = (size_t)r;
    }
    return (int)vlen;
#endif
}

/* Monotonic clock in seconds. */
static double fs_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds -> poll() milliseconds, rounded up so a wait never ends early;
   negative means "do not wait". */
static int fs_poll_ms(double seconds)
{
    double ms;
    if (seconds <= 0.0)
        return 0;
    ms = seconds * 1000.0;
    if (ms >= 2147483647.0)
        return 2147483647;
    return (int)ms + ((double)(int)ms < ms ? 1 : 0);
}

/* An IPv4 address (network order) in dotted-quad form, as inet_ntop()
   writes it, without its sprintf(); returns the length (7..15).  out must
   hold 16 bytes. */
static int fs_format_ipv4(const unsigned char *b, char *out)
{
    char *p = out;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (i)
            *p++ = '.';
        if (v >= 100) {
            *p++ = (char)('0' + v / 100);
            v %= 100;
            *p++ = (char)('0' + v / 10);
            v %= 10;
        } else if (v >= 10) {
            *p++ = (char)('0' + v / 10);
            v %= 10;
        }
        *p++ = (char)('0' + v);
    }
    *p = '\0';
    return (int)(p - out);
}

/* The leading fields of CPython's socket object (PySocketSockObject in
   Modules/socketmodule.h, the same from 3.7 through 3.13 on POSIX): the
   reader takes a plain socket.socket's descriptor and timeout from here
   instead of calling fileno() and gettimeout() on every recv.  Not a public
   API: fastsock._core checks at import that a live socket's fields read
   back what fileno()/gettimeout() say, and uses the methods if they do not. */
#include <Python.h>
typedef struct {
    PyObject_HEAD
    int sock_fd;                    /* SOCKET_T; -1 once closed */
    int sock_family;
    int sock_type;
    int sock_proto;
    PyObject *(*errorhandler)(void);
    int64_t sock_timeout;           /* _PyTime_t ns; < 0: blocking (None) */
} fs_sockobject;

#endif /* FASTSOCK_COMPAT_H */
