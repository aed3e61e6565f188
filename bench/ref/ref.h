/* ref.h — what the benchmark's reference servers and tools share: ADDR
 * parsing, a listening socket, the readiness line, the frame scanner.
 *
 * Benchmark-only code: nothing here is part of libsockit, and nothing in
 * libsockit includes it. ADDR is "PORT" (127.0.0.1), "HOST:PORT" (IPv4
 * literal), "unix:PATH" or a path containing '/'. Port 0 picks a free port;
 * the readiness line names the address actually bound:
 *     NAME listening on 127.0.0.1:40123
 *     NAME listening on unix:/tmp/x.sock
 */
#ifndef BENCH_REF_H
#define BENCH_REF_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Frames are a 4-byte big-endian length and that many bytes, as sockit's
 * frame framing. The same bound as sockit's default. */
#define REF_MAX_FRAME (16u * 1024u * 1024u)
/* Every reference server reads up to this much per read() call. */
#define REF_READ_CHUNK (64u * 1024u)

typedef struct ref_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int is_unix;
} ref_addr;

static inline void ref_die(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, strerror(errno));
    exit(1);
}

/* Parses ADDR into a socket address; exits with a message when it is bad. */
static inline void ref_parse(const char *text, ref_addr *a)
{
    memset(a, 0, sizeof *a);
    const char *path = NULL;
    if (strncmp(text, "unix:", 5) == 0)
        path = text + 5;
    else if (strchr(text, '/') != NULL)
        path = text;
    if (path) {
        struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
        if (strlen(path) == 0 || strlen(path) >= sizeof un->sun_path) {
            fprintf(stderr, "bad unix path \"%s\"\n", path);
            exit(2);
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        a->len = (socklen_t)sizeof *un;
        a->is_unix = 1;
        return;
    }
    char host[64] = "127.0.0.1";
    const char *port = text;
    const char *colon = strrchr(text, ':');
    if (colon) {
        size_t n = (size_t)(colon - text);
        if (n == 0 || n >= sizeof host) {
            fprintf(stderr, "bad address \"%s\"\n", text);
            exit(2);
        }
        memcpy(host, text, n);
        host[n] = '\0';
        port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
    if (*port == '\0' || *end != '\0' || p < 0 || p > 65535 ||
        inet_pton(AF_INET, host, &in->sin_addr) != 1) {
        fprintf(stderr, "bad address \"%s\" (PORT, HOST:PORT, unix:PATH)\n", text);
        exit(2);
    }
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)p);
    a->len = (socklen_t)sizeof *in;
}

/* Descriptors are the limit at 10,000 idle connections: take the hard limit. */
static inline void ref_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Prints "NAME listening on ADDR" for the bound socket fd and flushes, so a
 * driver script can wait for the line instead of sleeping. */
static inline void ref_ready(const char *name, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        ref_die("getsockname");
    if (ss.ss_family == AF_UNIX) {
        printf("%s listening on unix:%s\n", name, ((struct sockaddr_un *)&ss)->sun_path);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        printf("%s listening on %s:%u\n", name, ip, ntohs(in->sin_port));
    }
    fflush(stdout);
}

/* A bound socket of the given type (SOCK_STREAM listening, or SOCK_DGRAM),
 * non-blocking when asked; a stale unix socket file is replaced. */
static inline int ref_bind(const ref_addr *a, int type, int nonblock)
{
    int fd = socket(a->ss.ss_family, type | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        ref_die("socket");
    if (a->is_unix) {
        (void)unlink(((const struct sockaddr_un *)&a->ss)->sun_path);
    } else {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        ref_die("bind");
    if (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)
        ref_die("listen");
    return fd;
}

static inline uint32_t ref_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* How many leading bytes of buf are complete frames; -1 if a declared length
 * is over REF_MAX_FRAME (the caller closes the connection). */
static inline long ref_complete_frames(const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (len - off >= 4) {
        uint32_t n = ref_be32(buf + off);
        if (n > REF_MAX_FRAME)
            return -1;
        if (len - off - 4 < n)
            break;
        off += 4 + (size_t)n;
    }
    return (long)off;
}

#endif
