/* epoll for the greenlet hub (fastsock._core.Hub).  On systems without
   epoll the calls fail with ENOSYS, so the Hub cannot be created and the
   greenlet servers use the pure-Python hub (selectors) instead. */
#ifndef FASTSOCK_EPOLL_H
#define FASTSOCK_EPOLL_H
#include <errno.h>
#include <stdint.h>

#define FS_EV_IN  1u
#define FS_EV_OUT 4u
#define FS_EV_ERR 8u
#define FS_EV_HUP 16u

typedef struct {
    uint32_t events;
    int fd;
} fs_event;

#ifdef __linux__
#include <sys/epoll.h>
#include <unistd.h>

static int fs_epoll_open(void) { return epoll_create1(EPOLL_CLOEXEC); }

/* op: 1 add, 2 modify, 3 remove; events: FS_EV_IN/FS_EV_OUT */
static int fs_epoll_ctl(int epfd, int op, int fd, uint32_t events)
{
    struct epoll_event ev;
    ev.events = (events & FS_EV_IN ? EPOLLIN : 0) | (events & FS_EV_OUT ? EPOLLOUT : 0);
    ev.data.u64 = 0;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op == 1 ? EPOLL_CTL_ADD : op == 2 ? EPOLL_CTL_MOD : EPOLL_CTL_DEL,
                     fd, &ev);
}

/* Waits like epoll_wait; fills out[] (at most 256). */
static int fs_epoll_wait(int epfd, fs_event *out, int max, int ms)
{
    struct epoll_event evs[256];
    int i, n;
    if (max > 256)
        max = 256;
    n = epoll_wait(epfd, evs, max, ms);
    for (i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        out[i].fd = evs[i].data.fd;
        out[i].events = (e & EPOLLIN ? FS_EV_IN : 0) | (e & EPOLLOUT ? FS_EV_OUT : 0)
                      | (e & EPOLLERR ? FS_EV_ERR : 0) | (e & EPOLLHUP ? FS_EV_HUP : 0);
    }
    return n;
}
#else
static int fs_epoll_open(void) { errno = ENOSYS; return -1; }
static int fs_epoll_ctl(int epfd, int op, int fd, uint32_t events)
{ (void)epfd; (void)op; (void)fd; (void)events; errno = ENOSYS; return -1; }
static int fs_epoll_wait(int epfd, fs_event *out, int max, int ms)
{ (void)epfd; (void)out; (void)max; (void)ms; errno = ENOSYS; return -1; }
#endif

#endif /* FASTSOCK_EPOLL_H */
