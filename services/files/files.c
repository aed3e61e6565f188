/* files.c — the files service: its set-up (the root held open,
 * the token, the sweeper of expired partial uploads), one session per
 * connection, and the dispatch of each message to the handshake
 * (services/proto/handshake.c), LIST and STAT (files_list.c) or PUT and GET
 * (files_xfer.c). Messages: docs/PROTOCOL.md section 9.
 *
 * It runs on every worker: the service object is shared by their threads
 * (its counters are atomic, the penalty table and the session list sit
 * behind mutexes, the root descriptor is only ever used with *at() calls,
 * which share no state); a session belongs to its connection's loop. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "files_int.h"

/* ------------------------------------------------------------- options */

/* True if every address the listener would bind is a loopback one, or it
 * is a Unix socket: only then may a files server go without a token. */
static bool addr_is_local(const sk_addr *a)
{
    if (a->kind == SK_ADDR_UNIX)
        return true;
    if (a->kind != SK_ADDR_TCP && a->kind != SK_ADDR_TLS)
        return false;
    struct sockaddr_storage ss[8];
    socklen_t sl[8];
    int n = sk_addr_resolve(a, SK_RESOLVE_PASSIVE, ss, sl, 8, NULL, 0);
    if (n <= 0)
        return false;
    for (int i = 0; i < n; i++) {
        if (ss[i].ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&ss[i];
            if ((ntohl(in->sin_addr.s_addr) >> 24) != 127)
                return false;
        } else if (ss[i].ss_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss[i];
            const uint8_t *b = in6->sin6_addr.s6_addr;
            static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            bool v4_loop = memcmp(b, mapped, 12) == 0 && b[12] == 127;
            if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) && !v4_loop)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

int files_check_opts(const files_opts *o, const sk_addr *const *addrs, int naddrs, char *err,
                     size_t errlen)
{
    if (o->root == NULL) {
        snprintf(err, errlen, "files needs --root DIR (the directory it serves)");
        return -1;
    }
    int fd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "--root %s: %s", o->root,
                 errno == ENOTDIR ? "not a directory" : strerror(errno));
        return -1;
    }
    close(fd);
    if (o->partial_ttl_s == 0) {
        snprintf(err, errlen, "--partial-ttl must be at least 1 second");
        return -1;
    }
    if (o->max_unauth == 0 || o->max_unauth_per_source == 0) {
        snprintf(err, errlen, "--max-unauth and --max-unauth-per-source must be at least 1");
        return -1;
    }
    if (o->stall_ms == 0 || o->max_per_source == 0) {
        snprintf(err, errlen, "--%s must be at least 1",
                 o->stall_ms == 0 ? "stall-timeout" : "max-transfers-per-source");
        return -1;
    }
    if (o->token_file != NULL && o->no_auth) {
        snprintf(err, errlen, "files: --no-auth and --token-file exclude each other");
        return -1;
    }
    if (o->token_file != NULL) {
        uint8_t token[SK_TOKEN_MAX];
        size_t len;
        char why[300];
        int rc = sk_token_load(o->token_file, token, sizeof token, &len, why, sizeof why);
        OPENSSL_cleanse(token, sizeof token);
        if (rc < 0) {
            snprintf(err, errlen, "files: %s", why);
            return -1;
        }
        return 0;
    }
    for (int i = 0; i < naddrs; i++) {
        char text[300];
        sk_addr_format(addrs[i], text, sizeof text);
        if (!addr_is_local(addrs[i])) {
            snprintf(err, errlen,
                     "files on %s needs --token-file FILE: without a token anyone "
                     "who can reach it could read and write below %s (only loopback and "
                     "Unix sockets may go without)",
                     text, o->root);
            return -1;
        }
        /* A Unix socket with a path has file permissions, and its peers
         * are checked (SO_PEERCRED: the server's own user only). Loopback
         * TCP and abstract names have neither: every local user, and every
         * container in the network namespace, could reach them. */
        bool checked = addrs[i]->kind == SK_ADDR_UNIX && !addrs[i]->abstract;
        if (!checked && !o->no_auth) {
            snprintf(err, errlen,
                     "files on %s needs --token-file FILE, or --no-auth to let "
                     "every local user read and write below %s",
                     text, o->root);
            return -1;
        }
    }
    return 0;
}

int files_demo_root(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0755) == 0)
        return 1;
    struct stat st;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    snprintf(err, errlen, "cannot create the files root %s: %s", path,
             errno == EEXIST ? "a file of that name is in the way" : strerror(errno));
    return -1;
}

/* ------------------------------------------------------------- helpers */

static const char *peer(const fsess *s) { return sk_conn_peer(s->conn); }

static void on_stall_timer(sk_timer *t, void *ud)
{
    (void)t;
    files_stall_check(ud);
}

/* One step of hashing a resume's prefix; the transfer that asked for it
 * takes the result (files_xfer.c hashes, and calls nobody above it). */
static void hash_step(fsess *s)
{
    int rc;
    if (!files_hash_step(s, &rc))
        return;
    if (s->kind == FX_PUT)
        files_put_hashed(s, rc);
    else
        files_get_hashed(s, rc);
}

static void on_timer(sk_timer *t, void *ud)
{
    (void)t;
    fsess *s = ud;
    enum fs_timer kind = s->tkind;
    s->tkind = FT_NONE;
    if (kind == FT_DELAY) {
        proto_hs_delay_done(&s->hs);
    } else if (kind == FT_STEP) {
        if (s->state == FS_LIST)
            files_list_step(s);
        else if (s->state == FS_GET)
            files_get_pump(s);
        else if (s->state == FS_HASHING)
            hash_step(s);
        else if (s->state == FS_CHUNKS)
            files_chunks_step(s);
        else if (s->state == FS_PATCH_BASE)
            files_patch_step(s);
        else
            files_hold_flush(s); /* the input at hand is done: commit */
    }
}

/* ------------------------------------------------------------ requests */

void files_request(fsess *s, const uint8_t *msg, size_t len)
{
    uint8_t type = msg[0];
    const uint8_t *body = msg + 1;
    size_t blen = len - 1;
    if (s->nhold > 0) {
        /* Held answers go before the answer to anything but the next
         * pipelined upload. */
        static const uint8_t zero[FILES_ID];
        bool next =
            type == FT_DATA || type == FT_PUT_FROM || type == FT_PUT_END ||
            (type == FT_PUT && blen > 8 + FILES_ID && files_get64(body) != FILES_SIZE_STREAM &&
             memcmp(body + 8, zero, FILES_ID) == 0);
        if (!next)
            files_hold_flush(s);
    }
    if (s->state == FS_PUT_SKIP) {
        /* A failed upload's tail: its DATA and PUT_END are dropped; any
         * other message is the next request. */
        if (type == FT_DATA || type == FT_PUT_FROM || type == FT_PUT_AT)
            return;
        s->state = FS_READY;
        if (type == FT_PUT_END)
            return;
    }
    switch (s->state) {
    case FS_PUT_SKIP:
    case FS_READY:
        switch (type) {
        case FT_LIST: files_list(s, body, blen, false); return;
        case FT_TREE: files_list(s, body, blen, true); return;
        case FT_MKDIR:
        case FT_SYMLINK:
        case FT_META:
        case FT_DELETE: files_tree_op(s, type, body, blen); return;
        case FT_STAT: files_stat(s, body, blen); return;
        case FT_PUT: files_put(s, body, blen); return;
        case FT_GET: files_get(s, body, blen); return;
        case FT_CHUNKS:
            if (s->hs.version >= 2) {
                files_chunks(s, body, blen);
                return;
            }
            break; /* a version-1 session: unknown, as to an old server */
        case FT_PATCH:
            if (s->hs.version >= 3) {
                files_patch(s, body, blen);
                return;
            }
            break;
        case FT_GET_RANGE:
            if (s->hs.version >= 3) {
                files_get_range(s, body, blen);
                return;
            }
            break;
        case FT_PUT_AT:
            if (s->hs.version < 3)
                break;
            files_fail(s, "no upload is in progress");
            return;
        case FT_DATA:
        case FT_PUT_FROM:
        case FT_PUT_END: files_fail(s, "no upload is in progress"); return;
        default: break;
        }
        {
            char why[80];
            snprintf(why, sizeof why, "unknown request type 0x%02x", type);
            files_fail(s, why);
        }
        return;
    case FS_PUT_FROM:
        if (type == FT_PUT_FROM)
            files_put_from(s, body, blen);
        else
            files_fail(s, "expected PUT_FROM after PUT_READY");
        return;
    case FS_PUT_DATA:
        if (type == FT_DATA)
            files_put_data(s, body, blen);
        else if (type == FT_PUT_AT && s->patch)
            files_patch_at(s, body, blen);
        else if (type == FT_PUT_END)
            files_put_end(s, body, blen);
        else
            files_fail(s, "expected DATA or PUT_END during an upload");
        return;
    case FS_HASHING:
    case FS_GET:
    case FS_LIST:
    case FS_CHUNKS:
    case FS_PATCH_BASE:
        files_fail(s, "a request arrived before the answer to the last one ended");
        return;
    case FS_HELLO: return; /* handled by the caller */
    }
}

/* ------------------------------------------------------------ callbacks */

/* Without a token, a Unix socket serves only peers running as the
 * server's own user (SO_PEERCRED): the socket file's permissions may be
 * wider than meant, and an abstract name has none. Returns false after
 * refusing the peer. TCP peers (loopback, --no-auth) pass. */
static bool peer_is_ours(fsess *s)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = sk_conn_fd(s->conn);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 || ss.ss_family != AF_UNIX)
        return true;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
        sk_log(SK_LOG_WARN,
               "%s %s refused: its user cannot be told (SO_PEERCRED: %s) and the "
               "server has no token",
               s->ctx->name, peer(s), strerror(errno));
    } else if (cred.uid != geteuid()) {
        sk_log(SK_LOG_WARN,
               "%s %s refused: peer uid %ld is not the server's (uid %ld), and "
               "without a token only the server's own user is served on a Unix socket",
               s->ctx->name, peer(s), (long)cred.uid, (long)geteuid());
    } else {
        return true;
    }
    files_send_error(s, PE_AUTH, "this server serves only its own user on this socket");
    sk_conn_fail(s->conn, -EACCES, "peer of another user (SO_PEERCRED)");
    return false;
}

static void files_open_cb(sk_conn *c)
{
    const svc_ctx *ctx = sk_conn_data(c);
    files_svc *svc = ctx->state;
    fsess *s = calloc(1, sizeof *s);
    if (s == NULL || sk_timer_new(sk_conn_loop(c), on_timer, s, &s->timer) < 0 ||
        sk_timer_new(sk_conn_loop(c), on_stall_timer, s, &s->stall) < 0) {
        if (s != NULL)
            sk_timer_free(s->timer);
        free(s);
        sk_conn_set_data(c, NULL);
        sk_conn_abort(c, -ENOMEM);
        return;
    }
    s->svc = svc;
    s->ctx = ctx;
    s->conn = c;
    s->fd = s->dirfd = -1;
    s->made = FILES_MADE_NONE;
    files_source_key(peer(s), s->src);
    pthread_mutex_lock(&svc->sess_mu);
    s->next = svc->sessions;
    if (svc->sessions)
        svc->sessions->prev = s;
    svc->sessions = s;
    pthread_mutex_unlock(&svc->sess_mu);
    sk_conn_set_data(c, s);
    int rc = proto_hs_open(&s->hs, &svc->hs, c, ctx->name, ctx->quiet);
    if (rc < 0 && rc != -EBUSY)
        sk_conn_abort(c, rc);
    else if (rc == 0 && !svc->auth)
        (void)peer_is_ours(s);
}

/* A frame before the handshake is over: the shared handshake takes it. */
static void on_handshake(fsess *s, const uint8_t *data, size_t len)
{
    uint32_t delay = 0;
    switch (proto_hs_message(&s->hs, data, len, &delay)) {
    case PROTO_HS_DELAY:
        s->tkind = FT_DELAY;
        sk_timer_start(s->timer, delay, 0);
        return;
    case PROTO_HS_DONE: s->state = FS_READY; return;
    default: return;
    }
}

static void files_message(sk_conn *c, const uint8_t *data, size_t len)
{
    fsess *s = sk_conn_data(c);
    if (s == NULL)
        return;
    if (len == 0) {
        files_fail(s, "empty message");
        return;
    }
    switch (s->state) {
    case FS_HELLO: on_handshake(s, data, len); break;
    default: files_request(s, data, len); break;
    }
    /* After the handshake (which clears its own deadline) or a request: the
     * idle deadline runs exactly while no request is in progress. */
    files_idle_update(s);
}

static void files_drain(sk_conn *c)
{
    fsess *s = sk_conn_data(c);
    /* The next chunk or batch waits for the next iteration: queued from
     * here it would be written in this same flush, and a fast reader
     * would then keep the loop to itself. */
    if (s != NULL && (s->state == FS_GET || s->state == FS_LIST) && s->tkind == FT_NONE)
        files_schedule_step(s);
}

/* The client's side ended. A download or listing still owed to a client
 * that only half-closed is finished first; an upload cut short is left as
 * a partial file for a resume. */
static void files_eof(sk_conn *c)
{
    fsess *s = sk_conn_data(c);
    if (s == NULL) {
        sk_conn_close(c);
        return;
    }
    if (s->state == FS_GET || s->state == FS_LIST || s->state == FS_CHUNKS ||
        (s->state == FS_HASHING && s->kind == FX_GET)) {
        s->close_after = true;
        return;
    }
    if (s->kind == FX_PUT)
        files_xfer_end(s, true);
    files_hold_flush(s); /* what was verified is answered before the close */
    sk_conn_close(c);
}

/* A frame over the limit: say so in the protocol before the lingering
 * close. */
static void files_error_cb(sk_conn *c, int err)
{
    (void)err;
    fsess *s = sk_conn_data(c);
    if (s != NULL)
        files_send_error(s, PE_PROTOCOL, "%s", sk_conn_reason(c));
}

static void sess_free(fsess *s)
{
    files_hold_drop(s);
    files_xfer_end(s, true);
    files_list_end(s);
    sk_timer_free(s->timer);
    sk_timer_free(s->stall);
    free(s);
}

static void files_close_cb(sk_conn *c, int err)
{
    fsess *s = sk_conn_data(c);
    const svc_ctx *ctx = s ? s->ctx : NULL;
    svc_log_closed(c, err, ctx ? ctx->name : FILES_SERVICE, ctx ? ctx->quiet : false);
    if (s == NULL)
        return;
    files_svc *svc = s->svc;
    proto_hs_close(&s->hs);
    pthread_mutex_lock(&svc->sess_mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        svc->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&svc->sess_mu);
    sess_free(s);
}

static void files_stream(sk_conn_callbacks *cbs)
{
    cbs->on_open = files_open_cb;
    cbs->on_message = files_message;
    cbs->on_drain = files_drain;
    cbs->on_eof = files_eof;
    cbs->on_error = files_error_cb;
    cbs->on_close = files_close_cb;
}

/* The protocol fixes the frame sizes (a client's DATA is up to 256 KiB),
 * whatever --max-frame says; on_drain below the low-water mark asks for
 * the next chunk of a download or batch of a listing. */
static void files_conn_opts(sk_conn_opts *o)
{
    o->max_frame = FILES_IN_MAX;
    /* Idleness is the service's to judge (files_idle_update: between
     * requests only, default FILES_DEFAULT_IDLE_S): the stream's own idle
     * timer would also end a download whose reader pauses. */
    o->idle_timeout_ms = 0;
    o->out_high_water = FILES_QUEUE_HIGH;
    o->out_low_water = FILES_QUEUE_HIGH / 4;
}

/* ------------------------------------------------------------ start, stop */

static void svc_free(files_svc *svc)
{
    if (svc == NULL)
        return;
    files_sweeper_stop(svc->sweeper);
    /* Sessions left when a loop was freed without a drain: their loop,
     * connection and timer heap are gone; only their own resources are. */
    while (svc->sessions) {
        fsess *s = svc->sessions;
        svc->sessions = s->next;
        sess_free(s);
    }
    files_root_close(&svc->root);
    OPENSSL_cleanse(svc->token, sizeof svc->token);
    proto_penalties_destroy(&svc->pen);
    files_sources_destroy(&svc->sources);
    proto_preauth_destroy(&svc->pre);
    pthread_mutex_destroy(&svc->sess_mu);
    files_mids_free(svc);
    pthread_mutex_destroy(&svc->mid_mu);
    free(svc);
}

static int files_start(svc_ctx *ctx, sk_loop *loop, char *err, size_t errlen)
{
    (void)loop;
    files_svc *svc = calloc(1, sizeof *svc);
    if (svc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    svc->o = *ctx->files;
    svc->root.fd = -1;
    proto_penalties_init(&svc->pen);
    files_sources_init(&svc->sources);
    pthread_mutex_init(&svc->sess_mu, NULL);
    pthread_mutex_init(&svc->mid_mu, NULL);
    /* A new file gets what open(0666) would give it under the umask; read
     * here, before the workers start (umask can only be read by setting it). */
    mode_t mask = umask(022);
    umask(mask);
    svc->new_mode = 0666 & ~mask;
    if (proto_preauth_init(&svc->pre, svc->o.max_unauth, svc->o.max_unauth_per_source) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    atomic_init(&svc->transfers, 0);
    /* A switch for tests and for systems where openat2 misbehaves: the
     * walk is then used even where openat2 would work. */
    const char *no2 = getenv("SOCKIT_NO_OPENAT2");
    bool no_openat2 = no2 != NULL && no2[0] != '\0' && strcmp(no2, "0") != 0;
    if (files_root_open(&svc->root, svc->o.root, no_openat2, err, errlen) < 0)
        goto fail;
    if (svc->o.token_file != NULL) {
        char why[300];
        if (sk_token_load(svc->o.token_file, svc->token, sizeof svc->token, &svc->token_len, why,
                          sizeof why) < 0) {
            snprintf(err, errlen, "%s", why);
            goto fail;
        }
        svc->auth = true;
    }
    svc->hs = (proto_hs_service){
        .service = FILES_SERVICE,
        .token = svc->auth ? svc->token : NULL,
        .token_len = svc->token_len,
        .pen = &svc->pen,
        .pre = &svc->pre,
        .handshake_ms = svc->o.handshake_ms,
        .per_source = svc->o.max_unauth_per_source,
        .max_version = FILES_VERSION,
        .not_auth_code = PE_AUTH,
        .not_auth_text = "this server requires authentication: give the client the server's "
                         "token (--token-file)"};
    /* A read-only server changes nothing on disk, stale partial uploads
     * included: it may serve a tree that a writable server (or a backup
     * job) owns, with a user that cannot write there; the partials are
     * hidden from its clients anyway, and a writable server of the tree
     * sweeps them. */
    if (!svc->o.read_only) {
        svc->sweeper = files_sweeper_start(svc, err, errlen);
        if (svc->sweeper == NULL)
            goto fail;
    } else {
        sk_log(SK_LOG_INFO,
               "files: read-only: nothing below the root is written or removed "
               "(unfinished uploads are not swept; --partial-ttl applies to writable servers)");
    }
    if (svc->o.idle_ms)
        sk_log(SK_LOG_INFO,
               "files: sessions idle for %.0f s are closed (--idle-timeout), "
               "transfers stalled for %.0f s are ended (--stall-timeout), at most %u at once "
               "per address (--max-transfers-per-source)",
               svc->o.idle_ms / 1000.0, svc->o.stall_ms / 1000.0, svc->o.max_per_source);
    else
        sk_log(SK_LOG_INFO,
               "files: idle sessions are kept (--idle-timeout 0), transfers "
               "stalled for %.0f s are ended (--stall-timeout), at most %u at once per address "
               "(--max-transfers-per-source)",
               svc->o.stall_ms / 1000.0, svc->o.max_per_source);
    if (!svc->auth && svc->o.no_auth)
        sk_log(SK_LOG_WARN,
               "files: --no-auth: no token; every local user (and every container "
               "sharing this network namespace) can read and write below %s",
               svc->o.root);
    if (svc->root.use_openat2)
        sk_log(SK_LOG_INFO, "files: serving %s%s (confined by openat2 RESOLVE_BENEATH)",
               svc->o.root, svc->o.read_only ? " read-only" : "");
    else
        sk_log(SK_LOG_INFO,
               "files: serving %s%s (%s: paths are walked one component at a "
               "time and symbolic links are refused)",
               svc->o.root, svc->o.read_only ? " read-only" : "", svc->root.why_fallback);
    ctx->state = svc;
    return 0;
fail:
    svc_free(svc);
    return -1;
}

static void files_stop(svc_ctx *ctx)
{
    svc_free(ctx->state);
    ctx->state = NULL;
}

const svc_def svc_files = {
    .name = "files",
    .summary = "file transfer below --root (sockit put, get, ls)",
    .framing_choice = false,
    .fixed_framing = SK_FRAMING_FRAME,
    .stream = files_stream,
    .datagram = NULL,
    .one_loop = false,
    .start = files_start,
    .stop = files_stop,
    .conn_opts = files_conn_opts,
    .opts = files_options,
    .opts_title = "files options (frames of the files protocol; --framing does not apply):\n",
    .opts_store = &files_cli_opts,
    .opts_init = files_opts_init_store,
};
