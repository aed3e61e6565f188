/* verified_rx.c — the floor of a download verified with SHA-256: the least a
 * receiver must do (receive, write to a file, hash every byte), with
 * nothing of sockit around it, to compare `sockit get` with (RESULTS.md,
 * files). Not a sockit client: it speaks no protocol, only raw bytes.
 *
 *   verified_rx send PORT FILE SIZE     listen on 127.0.0.1:PORT, sendfile SIZE bytes of FILE
 *   verified_rx recv PORT OUT SIZE      recv 1 MiB, pwrite, SHA-256, in turn
 *   verified_rx thread PORT OUT SIZE    the same, SHA-256 on a second thread (4 buffers)
 *   verified_rx splice PORT OUT SIZE    splice socket -> pipe -> OUT, SHA-256 from a mapping
 *
 * Prints the first 8 hex digits of the SHA-256. Used as:
 *   taskset -c 0 verified_rx send 47000 src.bin 1073741824 &
 *   /usr/bin/time taskset -c 1 verified_rx recv 47000 /dev/shm/out 1073741824
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>

#define STEP (1u << 20)
#define NBUF 4u

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int do_send(int port, const char *file, long long size)
{
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = loopback(port);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0)
        die("listen");
    int c = accept(l, NULL, NULL), fd = open(file, O_RDONLY);
    if (c < 0 || fd < 0)
        die("accept/open");
    off_t off = 0;
    while (off < size)
        if (sendfile(c, fd, &off, (size_t)(size - off)) <= 0)
            die("sendfile");
    close(c);
    return 0;
}

static int dial(int port)
{
    struct sockaddr_in a = loopback(port);
    for (int tries = 0; tries < 250; tries++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            return s;
        close(s);
        usleep(20000); /* the sender is still starting */
    }
    die("connect");
    return -1;
}

static void recv_all(int s, uint8_t *buf, size_t want)
{
    for (size_t got = 0; got < want;) {
        ssize_t n = recv(s, buf + got, want - got, 0);
        if (n <= 0)
            die("recv");
        got += (size_t)n;
    }
}

static void write_all(int fd, const uint8_t *buf, size_t len, long long pos)
{
    if (pwrite(fd, buf, len, (off_t)pos) != (ssize_t)len)
        die("pwrite");
}

/* The hash thread of "thread": a ring of NBUF buffers. */
static uint8_t *ring[NBUF];
static size_t ring_len[NBUF];
static unsigned head, tail;
static bool done;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *hasher(void *arg)
{
    EVP_MD_CTX *md = arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (head == tail && !done)
            pthread_cond_wait(&cv, &mu);
        if (head == tail)
            break;
        unsigned i = tail % NBUF;
        pthread_mutex_unlock(&mu);
        EVP_DigestUpdate(md, ring[i], ring_len[i]);
        pthread_mutex_lock(&mu);
        tail++;
        pthread_cond_broadcast(&cv);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: verified_rx send|recv|thread|splice PORT FILE SIZE\n");
        return 2;
    }
    const char *mode = argv[1];
    int port = atoi(argv[2]);
    long long size = atoll(argv[4]), pos = 0;
    if (strcmp(mode, "send") == 0)
        return do_send(port, argv[3], size);
    int s = dial(port);
    int fd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    if (strcmp(mode, "recv") == 0) {
        uint8_t *buf = malloc(STEP);
        for (; pos < size;) {
            size_t n = size - pos < STEP ? (size_t)(size - pos) : STEP;
            recv_all(s, buf, n);
            write_all(fd, buf, n, pos);
            EVP_DigestUpdate(md, buf, n);
            pos += (long long)n;
        }
    } else if (strcmp(mode, "thread") == 0) {
        for (unsigned i = 0; i < NBUF; i++)
            ring[i] = malloc(STEP);
        pthread_t t;
        pthread_create(&t, NULL, hasher, md);
        for (; pos < size;) {
            pthread_mutex_lock(&mu);
            while (head - tail == NBUF)
                pthread_cond_wait(&cv, &mu);
            unsigned i = head % NBUF;
            pthread_mutex_unlock(&mu);
            size_t n = size - pos < STEP ? (size_t)(size - pos) : STEP;
            recv_all(s, ring[i], n);
            write_all(fd, ring[i], n, pos);
            pos += (long long)n;
            pthread_mutex_lock(&mu);
            ring_len[i] = n;
            head++;
            pthread_cond_broadcast(&cv);
            pthread_mutex_unlock(&mu);
        }
        pthread_mutex_lock(&mu);
        done = true;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        pthread_join(t, NULL);
    } else if (strcmp(mode, "splice") == 0) {
        int p[2];
        if (pipe(p) < 0)
            die("pipe");
        fcntl(p[1], F_SETPIPE_SZ, STEP);
        for (; pos < size;) {
            size_t want = size - pos < STEP ? (size_t)(size - pos) : STEP, got = 0;
            while (got < want) {
                ssize_t n = splice(s, NULL, p[1], NULL, want - got, SPLICE_F_MOVE | SPLICE_F_MORE);
                if (n <= 0)
                    die("splice in");
                loff_t o = pos + (long long)got;
                for (ssize_t m = 0; m < n;) {
                    ssize_t k = splice(p[0], NULL, fd, &o, (size_t)(n - m), SPLICE_F_MOVE);
                    if (k <= 0)
                        die("splice out");
                    m += k;
                }
                got += (size_t)n;
            }
            long long from = pos & ~4095LL;
            size_t len = (size_t)(pos + (long long)got - from);
            uint8_t *m = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, from);
            if (m == MAP_FAILED)
                die("mmap");
            EVP_DigestUpdate(md, m + (pos - from), got);
            munmap(m, len);
            pos += (long long)got;
        }
    } else {
        fprintf(stderr, "verified_rx: unknown mode %s\n", mode);
        return 2;
    }
    uint8_t d[32];
    EVP_DigestFinal_ex(md, d, NULL);
    for (int i = 0; i < 4; i++)
        printf("%02x", d[i]);
    printf("\n");
    return 0;
}
