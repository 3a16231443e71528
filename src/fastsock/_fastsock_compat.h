/* Small portability layer for fastsock._core (C only, no Python). */
#ifndef FASTSOCK_COMPAT_H
#define FASTSOCK_COMPAT_H

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

/* accept() whose new descriptor is close-on-exec, like Python's. */
static int fs_accept_cloexec(int fd, struct sockaddr *addr, socklen_t *len)
{
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
    return accept4(fd, addr, len, SOCK_CLOEXEC);
#else
    int cfd = accept(fd, addr, len);
    if (cfd >= 0 && fcntl(cfd, F_SETFD, FD_CLOEXEC) < 0) {
        int saved = errno;
        close(cfd);
        errno = saved;
        return -1;
    }
    return cfd;
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

#endif /* FASTSOCK_COMPAT_H */
