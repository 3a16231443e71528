# C declarations used by fastsock._core: just the definitions, no code.
# Everything here is declared nogil so it can run with the GIL released.


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EINTR
        EAGAIN
        EWOULDBLOCK
        EBADF
        EINVAL

cdef extern from "<string.h>" nogil:
    char *strerror(int errnum)
    void *memchr(const void *s, int c, size_t n)
    void *memcpy(void *dest, const void *src, size_t n)
    void *memmove(void *dest, const void *src, size_t n)
    int memcmp(const void *s1, const void *s2, size_t n)
    void *memset(void *s, int c, size_t n)
    size_t strnlen(const char *s, size_t maxlen)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<poll.h>" nogil:
    ctypedef unsigned long nfds_t
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, nfds_t nfds, int timeout)
    enum:
        POLLIN
        POLLOUT
        POLLERR
        POLLHUP
        POLLNVAL

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t c_recvfrom "recvfrom"(int fd, void *buf, size_t n, int flags,
                     sockaddr *addr, socklen_t *addrlen)
    enum:
        AF_INET
        AF_INET6
        AF_UNIX
        MSG_PEEK
        MSG_DONTWAIT
        MSG_NOSIGNAL

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    unsigned short ntohs(unsigned short)
    unsigned int ntohl(unsigned int)

cdef extern from "<sys/un.h>" nogil:
    struct sockaddr_un:
        sa_family_t sun_family
        char sun_path[108]

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    enum:
        INET_ADDRSTRLEN
        INET6_ADDRSTRLEN

cdef extern from "_fastsock_compat.h" nogil:
    int fs_waker_open(int *rfd, int *wfd)
    int fs_waker_post(int wfd)
    void fs_waker_drain(int rfd)
    int fs_accept_flags(int fd, sockaddr *addr, socklen_t *len, int nonblock)
    int fs_recv_batch(int fd, char *buf, size_t size, unsigned int vlen,
                      sockaddr_storage *addrs, socklen_t *addrlens, size_t *lens)
    double fs_monotonic()
    int fs_heap_trim()
    int fs_poll_ms(double seconds)
    int fs_format_ipv4(const unsigned char *b, char *out)
    ctypedef struct fs_sockobject:
        int sock_fd
        int sock_family
        int sock_type
        int sock_proto
        long long sock_timeout
