/*
 * store: the queue, the writer thread and the commit bookkeeping, shared
 * by both backends (store_int.h); the database work is the backend's
 * (store_sqlite.c, store_pg.c). See store.h.
 *
 * The queue is a list of owned row copies. The writer sleeps on a condition
 * variable until a write arrives, then waits flush_ms more so that a burst
 * of REGISTERs becomes one transaction, then takes the whole list at once
 * (O(1) under the lock) and hands it to the backend outside the lock.
 * Workers therefore hold the mutex only to link a node. Load expected: one
 * write per accepted REGISTER (a few thousand per second at most), so one
 * transaction per flush_ms keeps the database far from its limits.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/list.h"
#include "base/log.h"
#include "base/xmalloc.h"

void
store_errf(char *err, size_t errlen, const char *where, const char *what,
           const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "store: %s: %s: %s", where, what, why);
}

void
store_op_free(struct op *o)
{
    bool secret = o->kind == OP_PROV_PUT || o->kind == OP_PROV_IMPORT ||
                  o->kind == OP_PROV_FETCH; /* the token */

    for (size_t k = 0; k < sizeof(o->s) / sizeof(o->s[0]); k++) {
        if (secret && o->s[k])
            explicit_bzero(o->s[k], o->packed ? o->len[k] : strlen(o->s[k]));
        if (!o->packed)
            free(o->s[k]);
    }
    free(o->blob);
    free(o);
}

int
store_backend_parse(const char *name, enum store_backend *out)
{
    if (!name || !name[0] || strcmp(name, "sqlite") == 0)
        *out = STORE_BACKEND_SQLITE;
    else if (strcmp(name, "postgresql") == 0)
        *out = STORE_BACKEND_POSTGRESQL;
    else
        return -EINVAL;
    return 0;
}

static void
deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void
store_thread_nice(unsigned nice, const char *what)
{
    /* Linux: a thread is a task with a nice value of its own. */
    if (nice > 0 && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid),
                                (int)nice) < 0)
        log_warn("store", "%s thread: nice %u: %s", what, nice, strerror(errno));
}

/* With st->lock held, wait until the writer marks o done: 0 (the lock
 * still held), or -ETIMEDOUT at until (o abandoned: the writer frees it;
 * the lock released). */
static int
wait_done(struct store *st, struct op *o, const struct timespec *until)
{
    while (!o->done) {
        if (pthread_cond_timedwait(&st->done, &st->lock, until) ==
                ETIMEDOUT &&
            !o->done) {
            o->abandoned = true;
            pthread_mutex_unlock(&st->lock);
            return -ETIMEDOUT;
        }
    }
    return 0;
}

/* A call record's cap (keep the newest N rows of its node: a DELETE that
 * walks N index entries) runs once a batch per node, after that node's last
 * record of the batch: the rows left are the same as with a cap after each
 * insert, for a fraction of the work (at 3,000 calls/s and N = 1000, the
 * per-insert cap was most of PostgreSQL's CPU). */
static void
call_caps_once(struct list_node *batch)
{
    const char *seen[8];
    size_t n = 0;

    for (struct list_node *pos = batch->prev; pos != batch; pos = pos->prev) {
        struct op *o = container_of(pos, struct op, node);
        if (o->kind != OP_CALL_PUT || o->i[14] <= 0)
            continue;
        size_t k = 0;
        while (k < n && strcmp(seen[k], o->s[0]) != 0)
            k++;
        if (k < n)
            o->i[14] = 0; /* a later record of its node caps */
        else if (n < sizeof(seen) / sizeof(seen[0]))
            seen[n++] = o->s[0];
    }
}

static void *
writer_main(void *arg)
{
    struct store *st = arg;

    (void)pthread_setname_np(pthread_self(), "pbx-store");
    store_thread_nice(st->writer_nice, "writer");

    pthread_mutex_lock(&st->lock);
    for (;;) {
        while (st->queue_len == 0 && !st->stop)
            pthread_cond_wait(&st->wake, &st->lock);
        if (st->queue_len == 0 && st->stop)
            break;
        if (!st->stop) {
            /* Batch window: let a burst accumulate. A stop request ends
             * the wait early so shutdown does not lose flush_ms. */
            struct timespec until;
            deadline_after(&until, st->flush_ms);
            while (!st->stop && st->urgent == 0 && st->reads == 0 &&
                   st->fetches == 0) {
                if (pthread_cond_timedwait(&st->wake, &st->lock, &until) ==
                    ETIMEDOUT)
                    break;
            }
        }
        struct list_node batch;
        list_init(&batch);
        if (!list_empty(&st->queue)) {
            /* Move the whole queue into batch in O(1). */
            batch.next = st->queue.next;
            batch.prev = st->queue.prev;
            batch.next->prev = &batch;
            batch.prev->next = &batch;
            list_init(&st->queue);
        }
        /* Ops that run SQL (writes and reads), no commit requests. */
        size_t count = st->queue_len - st->urgent;
        size_t reads = st->reads;
        uint64_t last = st->seq_queued;
        st->queue_len = 0;
        st->urgent = 0;
        st->reads = 0;
        st->fetches = 0;
        pthread_mutex_unlock(&st->lock);

        call_caps_once(&batch);
        bool ok = st->ops->run_batch(st, &batch, count);
        /* Free the writes now (outside the lock); keep the commit
         * requests, whose callers are told under the lock. */
        struct list_node requests, gets, *pos, *tmp;
        list_init(&requests);
        list_init(&gets);
        list_for_each_safe(pos, tmp, &batch)
        {
            struct op *o = container_of(pos, struct op, node);
            list_remove(pos);
            if (o->kind == OP_COMMIT || o->kind == OP_PROV_FETCH)
                list_push_back(&requests, pos);
            else if (o->kind == OP_MSG_GET)
                list_push_back(&gets, pos);
            else
                store_op_free(o);
        }
        /* Reads first, outside the lock: a message fetched for delivery
         * need not wait for the commit requests' bookkeeping. */
        list_for_each_safe(pos, tmp, &gets)
        {
            struct op *o = container_of(pos, struct op, node);
            list_remove(pos);
            int grc = ok ? o->rc : -EIO;
            struct store_msg m = {
                .id = (uint64_t)o->i[0],
                .ext = o->s[0],
                .sender_uri = o->s[1],
                .sender_name = o->s[2],
                .call_id = o->s[3],
                .content_type = o->s[4],
                .body = o->blob,
                .body_len = o->blob_len,
                .cseq = (uint32_t)o->i[1],
                .received_at = o->i[2],
                .expires_at = o->i[3],
                .received_us = o->i[4],
            };
            o->get_cb(grc, grc == 0 ? &m : NULL, o->cb_arg);
            store_op_free(o);
        }

        pthread_mutex_lock(&st->lock);
        if (ok) {
            st->stats.committed += count - reads;
            if (count > reads) {
                st->stats.batches++;
                if (st->w_failing)
                    st->stats.recoveries++; /* writes commit again */
                st->w_failing = false;
            }
            st->stats.msg_capped += st->w_capped;
            st->stats.msg_purged += st->w_purged;
            st->stats.calls_capped += st->w_calls_capped;
        } else {
            st->stats.errors++;
            st->w_failing = true;
            st->failed_since_sync = true;
            st->fail_hi = last;
        }
        st->seq_done = last;
        struct list_node async;
        list_init(&async);
        list_for_each_safe(pos, tmp, &requests)
        {
            struct op *o = container_of(pos, struct op, node);
            list_remove(pos);
            if (o->abandoned) {
                store_op_free(o);
                continue;
            }
            /* Every batch up to this one is finished, later ones have not
             * run: fail_hi > mark means a batch holding a write queued
             * after the caller's mark was rolled back. A fetch counted
             * is the backend's answer, once this batch committed. */
            if (o->kind == OP_PROV_FETCH)
                o->rc = ok ? o->rc : -EIO;
            else
                o->rc = st->fail_hi > o->mark ? -EIO : 0;
            o->done = true;
            if (o->cb)
                list_push_back(&async, pos);
        }
        pthread_cond_broadcast(&st->done);
        if (!list_empty(&async)) {
            /* Outside the lock: a callback may queue more. */
            pthread_mutex_unlock(&st->lock);
            list_for_each_safe(pos, tmp, &async)
            {
                struct op *o = container_of(pos, struct op, node);
                list_remove(pos);
                o->cb(o->rc, o->cb_arg);
                store_op_free(o);
            }
            pthread_mutex_lock(&st->lock);
        }
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

static int
enqueue(struct store *st, struct op *o)
{
    pthread_mutex_lock(&st->lock);
    if (st->queue_len >= st->max_queue || st->stop) {
        st->stats.dropped++;
        pthread_mutex_unlock(&st->lock);
        store_op_free(o);
        /* Logged by the writer's counters and the caller; keep this cheap
         * because a full queue means we are already overloaded. */
        return -ENOSPC;
    }
    list_push_back(&st->queue, &o->node);
    st->queue_len++;
    st->seq_queued++;
    st->stats.queued++;
    if (st->queue_len == 1)
        pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

static char *
dup_or_empty(const char *s)
{
    return xstrdup(s ? s : "");
}

static struct op *
op_new(enum op_kind kind)
{
    struct op *o = xcalloc(1, sizeof(*o));
    o->kind = kind;
    return o;
}

/* An op with copies of the n strings str[] (NULL = "") packed after the
 * struct: one allocation per queued write, freed by the writer with one
 * free() (a binding refresh made ten before, the biggest malloc caller of
 * a REGISTER in the profile), and each length kept so that the backend
 * binds text without measuring it again. */
static struct op *
op_new_packed(enum op_kind kind, const char *const *str, size_t n)
{
    size_t len[sizeof(((struct op *)0)->s) / sizeof(char *)];
    size_t total = 0;

    if (n > sizeof(len) / sizeof(len[0]))
        abort(); /* a caller's mistake: more strings than an op holds */
    for (size_t k = 0; k < n; k++) {
        len[k] = str[k] ? strlen(str[k]) : 0;
        if (len[k] > UINT32_MAX - 1)
            len[k] = 0; /* not a SIP value: written as "" */
        total += len[k] + 1;
    }
    struct op *o = xmalloc(sizeof(*o) + total);
    char *p = (char *)(o + 1);

    memset(o, 0, sizeof(*o));
    o->kind = kind;
    o->packed = true;
    for (size_t k = 0; k < n; k++) {
        if (len[k])
            memcpy(p, str[k], len[k]);
        p[len[k]] = '\0';
        o->s[k] = p;
        o->len[k] = (uint32_t)len[k];
        p += len[k] + 1;
    }
    return o;
}

#define OP_PACKED(kind, ...)                                                   \
    op_new_packed(kind, (const char *const[]){__VA_ARGS__},                    \
                  sizeof((const char *const[]){__VA_ARGS__}) /                 \
                      sizeof(const char *))

int
store_ext_put(struct store *st, const struct store_ext *e)
{
    struct op *o = OP_PACKED(OP_EXT_PUT, e->number, e->display, e->realm,
                             e->ha1_md5, e->ha1_sha256);

    o->i[0] = e->enabled ? 1 : 0;
    o->i[1] = e->max_push_devices;
    o->i[2] = e->source == STORE_EXT_CONFIG ? STORE_EXT_CONFIG : STORE_EXT_API;
    return enqueue(st, o);
}

int
store_ext_set_source(struct store *st, const char *number,
                     enum store_ext_source source)
{
    struct op *o = OP_PACKED(OP_EXT_SOURCE, number);

    o->i[0] = source == STORE_EXT_CONFIG ? STORE_EXT_CONFIG : STORE_EXT_API;
    return enqueue(st, o);
}

int
store_ext_del(struct store *st, const char *number)
{
    struct op *o = OP_PACKED(OP_EXT_DEL, number);

    return enqueue(st, o);
}

int
store_binding_put(struct store *st, const struct store_binding *b)
{
    struct op *o = OP_PACKED(OP_BIND_PUT, b->ext, b->key, b->uri, b->params,
                             b->instance, b->call_id, b->path, b->source,
                             b->user_agent, b->node);

    o->i[0] = b->reg_id;
    o->i[1] = b->cseq;
    o->i[2] = b->expires_at;
    o->i[3] = b->updated_at;
    o->i[4] = b->transport;
    /* SQLite integers are signed 64-bit; flow ids stay far below 2^63. */
    o->i[5] = (int64_t)(b->flow_id & INT64_MAX);
    return enqueue(st, o);
}

int
store_binding_del(struct store *st, const char *ext, const char *key)
{
    struct op *o = OP_PACKED(OP_BIND_DEL, ext, key);

    return enqueue(st, o);
}

int
store_binding_del_node(struct store *st, const char *ext, const char *key,
                       const char *node)
{
    struct op *o = OP_PACKED(OP_BIND_DEL_NODE, ext, key, node);

    return enqueue(st, o);
}

int
store_binding_del_ext(struct store *st, const char *ext)
{
    struct op *o = OP_PACKED(OP_BIND_DEL_EXT, ext);

    return enqueue(st, o);
}

int
store_pushdev_put(struct store *st, const struct store_pushdev *d)
{
    struct op *o = OP_PACKED(OP_PD_PUT, d->ext, d->provider, d->prid,
                             d->param, d->instance);

    o->i[0] = d->created_at;
    o->i[1] = d->last_seen;
    return enqueue(st, o);
}

int
store_pushdev_del(struct store *st, const char *provider, const char *prid)
{
    struct op *o = OP_PACKED(OP_PD_DEL, provider, prid);

    return enqueue(st, o);
}

int
store_pushdev_del_ext(struct store *st, const char *ext)
{
    struct op *o = OP_PACKED(OP_PD_DEL_EXT, ext);

    return enqueue(st, o);
}

static struct op *
prov_op(enum op_kind kind, const struct store_prov *p)
{
    struct op *o = OP_PACKED(kind, p->ext, p->token, p->password);

    o->i[0] = p->created_at;
    o->i[1] = p->expires_at;
    o->i[2] = p->fetches;
    o->i[3] = p->max_fetches;
    return o;
}

int
store_prov_put(struct store *st, const struct store_prov *p)
{
    return enqueue(st, prov_op(OP_PROV_PUT, p));
}

int
store_prov_import_row(struct store *st, const struct store_prov *p)
{
    return enqueue(st, prov_op(OP_PROV_IMPORT, p));
}

int
store_prov_count_fetch(struct store *st, const char *ext, const char *token,
                       int64_t now_s, unsigned timeout_ms,
                       struct store_prov_count *out)
{
    if (!ext || !token || !out)
        return -EINVAL;
    struct op *o = OP_PACKED(OP_PROV_FETCH, ext, token);
    struct timespec until;
    int rc = 0;

    o->i[0] = now_s;
    o->rc = -EIO; /* a backend that did not run it */
    deadline_after(&until, timeout_ms);
    pthread_mutex_lock(&st->lock);
    if (st->stop || st->queue_len >= st->max_queue) {
        rc = st->stop ? -ESHUTDOWN : -ENOSPC;
        if (rc == -ENOSPC)
            st->stats.dropped++;
        pthread_mutex_unlock(&st->lock);
        store_op_free(o);
        return rc;
    }
    /* Queued like a write (ordered after this thread's writes), waited
     * for like a commit request. */
    list_push_back(&st->queue, &o->node);
    st->queue_len++;
    st->seq_queued++;
    st->stats.queued++;
    st->fetches++;
    pthread_cond_signal(&st->wake); /* also ends a batch window */
    if (wait_done(st, o, &until) < 0)
        return -ETIMEDOUT;
    pthread_mutex_unlock(&st->lock);
    rc = o->rc;
    if (rc == 0)
        *out = (struct store_prov_count){
            .counted = o->i[1] != 0,
            .found = o->i[2] != 0,
            .fetches = (unsigned)o->i[3],
            .max_fetches = (unsigned)o->i[4],
            .expires_at = o->i[5],
        };
    store_op_free(o);
    return rc;
}

int
store_node_beat(struct store *st, const struct store_node *n)
{
    if (!n->name || !n->name[0])
        return -EINVAL;
    struct op *o = op_new(OP_NODE_PUT);

    o->s[0] = xstrdup(n->name);
    o->s[1] = dup_or_empty(n->advertise);
    o->i[0] = n->started_at;
    o->i[1] = n->last_seen;
    o->i[2] = n->calls;
    return enqueue(st, o);
}

int
store_prov_del(struct store *st, const char *ext)
{
    struct op *o = OP_PACKED(OP_PROV_DEL, ext);

    return enqueue(st, o);
}

int
store_msg_put(struct store *st, const struct store_msg *m,
              unsigned max_per_ext)
{
    if (m->id == 0 || m->id > INT64_MAX || !m->ext || !m->ext[0])
        return -EINVAL;
    struct op *o = op_new(OP_MSG_PUT);

    o->s[0] = dup_or_empty(m->ext);
    o->s[1] = dup_or_empty(m->sender_uri);
    o->s[2] = dup_or_empty(m->sender_name);
    o->s[3] = dup_or_empty(m->call_id);
    o->s[4] = dup_or_empty(m->content_type);
    o->blob_len = m->body ? m->body_len : 0;
    o->blob = xmalloc(o->blob_len ? o->blob_len : 1);
    if (o->blob_len)
        memcpy(o->blob, m->body, o->blob_len);
    o->i[0] = (int64_t)m->id;
    o->i[1] = m->cseq;
    o->i[2] = m->received_at;
    o->i[3] = m->expires_at;
    o->i[4] = max_per_ext;
    o->i[5] = m->received_us;
    return enqueue(st, o);
}

int
store_msg_del(struct store *st, uint64_t id)
{
    struct op *o = op_new(OP_MSG_DEL);

    o->i[0] = (int64_t)(id & INT64_MAX);
    return enqueue(st, o);
}

int
store_msg_del_ext(struct store *st, const char *ext)
{
    struct op *o = op_new(OP_MSG_DEL_EXT);

    o->s[0] = dup_or_empty(ext);
    return enqueue(st, o);
}

int
store_msg_purge(struct store *st, int64_t now_s)
{
    struct op *o = op_new(OP_MSG_PURGE);

    o->i[0] = now_s;
    return enqueue(st, o);
}

void
store_msg_get_async(struct store *st, uint64_t id, store_msg_get_cb *cb,
                    void *arg)
{
    struct op *o = op_new(OP_MSG_GET);
    int rc = 0;

    o->i[0] = (int64_t)(id & INT64_MAX);
    o->get_cb = cb;
    o->cb_arg = arg;
    pthread_mutex_lock(&st->lock);
    if (st->stop) {
        rc = -ESHUTDOWN;
    } else if (st->queue_len >= st->max_queue) {
        st->stats.dropped++;
        rc = -ENOSPC;
    } else {
        list_push_back(&st->queue, &o->node);
        st->queue_len++;
        st->seq_queued++;
        st->reads++;
        pthread_cond_signal(&st->wake); /* also ends a batch window */
    }
    pthread_mutex_unlock(&st->lock);
    if (rc < 0) {
        store_op_free(o);
        cb(rc, NULL, arg);
    }
}

int
store_sync(struct store *st)
{
    pthread_mutex_lock(&st->lock);
    uint64_t target = st->seq_queued;
    if (st->queue_len > 0)
        pthread_cond_signal(&st->wake);
    while (st->seq_done < target)
        pthread_cond_wait(&st->done, &st->lock);
    int rc = st->failed_since_sync ? -EIO : 0;
    st->failed_since_sync = false;
    pthread_mutex_unlock(&st->lock);
    return rc;
}

struct store_mark
store_mark(struct store *st)
{
    pthread_mutex_lock(&st->lock);
    struct store_mark m = {.seq = st->seq_queued,
                           .dropped = st->stats.dropped};
    pthread_mutex_unlock(&st->lock);
    return m;
}

int
store_commit(struct store *st, struct store_mark m, unsigned timeout_ms)
{
    uint64_t mark = m.seq;
    struct timespec until;
    int rc = 0;

    deadline_after(&until, timeout_ms);
    pthread_mutex_lock(&st->lock);
    if (st->stop) {
        pthread_mutex_unlock(&st->lock);
        return -ESHUTDOWN;
    }
    if (st->stats.dropped > m.dropped) {
        /* A write queued after mark never entered the queue. The others
         * still commit within flush_ms as usual. */
        pthread_mutex_unlock(&st->lock);
        return -ENOSPC;
    }
    if (st->seq_done >= st->seq_queued) {
        /* Nothing is waiting: every write after mark is finished. */
        rc = st->fail_hi > mark ? -EIO : 0;
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    /* A request in the queue, not a write: it is never refused for a
     * full queue (the caller waits, which is back-pressure enough). */
    struct op *o = op_new(OP_COMMIT);
    o->mark = mark;
    list_push_back(&st->queue, &o->node);
    st->queue_len++;
    st->seq_queued++;
    st->urgent++;
    pthread_cond_signal(&st->wake); /* also ends a batch window */
    if (wait_done(st, o, &until) < 0)
        return -ETIMEDOUT;
    rc = o->rc;
    pthread_mutex_unlock(&st->lock);
    store_op_free(o);
    return rc;
}

void
store_commit_async(struct store *st, struct store_mark m, store_commit_cb *cb,
                   void *arg)
{
    int rc;

    pthread_mutex_lock(&st->lock);
    if (st->stop) {
        rc = -ESHUTDOWN;
    } else if (st->stats.dropped > m.dropped) {
        rc = -ENOSPC;
    } else if (st->seq_done >= st->seq_queued) {
        rc = st->fail_hi > m.seq ? -EIO : 0;
    } else {
        struct op *o = op_new(OP_COMMIT);
        o->mark = m.seq;
        o->cb = cb;
        o->cb_arg = arg;
        list_push_back(&st->queue, &o->node);
        st->queue_len++;
        st->seq_queued++;
        st->urgent++;
        pthread_cond_signal(&st->wake); /* also ends a batch window */
        pthread_mutex_unlock(&st->lock);
        return;
    }
    pthread_mutex_unlock(&st->lock);
    cb(rc, arg);
}

void
store_get_stats(struct store *st, struct store_stats *out)
{
    pthread_mutex_lock(&st->lock);
    *out = st->stats;
    out->queue_len = st->queue_len;
    pthread_mutex_unlock(&st->lock);
    out->checkpoints = st->ops->checkpoints ? st->ops->checkpoints(st) : 0;
}


int
store_open(const struct store_cfg *cfg, struct store **out, char *err,
           size_t errlen)
{
    enum store_backend be;

    if (store_backend_parse(cfg->backend, &be) < 0) {
        store_errf(err, errlen, "backend", cfg->backend,
                   "unknown (sqlite or postgresql)");
        return -EINVAL;
    }
    struct store *st = xcalloc(1, sizeof(*st));
    st->backend = be;
    st->ops = be == STORE_BACKEND_POSTGRESQL ? &store_pg_ops
                                             : &store_sqlite_ops;
    st->node = xstrdup(cfg->node ? cfg->node : "");
    st->flush_ms = cfg->flush_ms < 10     ? 10
                   : cfg->flush_ms > 1000 ? 1000
                                          : cfg->flush_ms;
    st->max_queue = cfg->max_queue ? cfg->max_queue : 100000;
    st->writer_nice = cfg->writer_nice > 19 ? 19 : cfg->writer_nice;
    list_init(&st->queue);
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->wake, NULL);
    pthread_cond_init(&st->done, NULL);

    int rc = st->ops->open(st, cfg, err, errlen);
    if (rc < 0)
        goto fail;
    rc = -pthread_create(&st->thread, NULL, writer_main, st);
    if (rc < 0) {
        store_errf(err, errlen, st->ops->name, "pthread_create",
                   strerror(-rc));
        st->ops->close(st);
        goto fail;
    }
    *out = st;
    return 0;
fail:
    pthread_cond_destroy(&st->done);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->lock);
    free(st->path);
    free(st->node);
    free(st);
    return rc;
}

void
store_close(struct store *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->stop = true;
    pthread_cond_signal(&st->wake);
    pthread_mutex_unlock(&st->lock);
    pthread_join(st->thread, NULL); /* the writer drains the queue first */
    if (st->stats.errors)
        log_warn("store", "closing after %llu failed batches",
                 (unsigned long long)st->stats.errors);
    st->ops->close(st); /* stops the backend's listener too */
    pthread_cond_destroy(&st->done);
    pthread_cond_destroy(&st->wake);
    pthread_mutex_destroy(&st->lock);
    free(st->path);
    free(st->node);
    free(st);
}

/* ---- reads: the backend's ------------------------------------------- */

int
store_count(struct store *st, const char *table, size_t *out)
{
    return st->ops->count(st, table, out);
}

int
store_ext_load(struct store *st, store_ext_cb *cb, void *arg)
{
    return st->ops->ext_load(st, cb, arg);
}

int
store_binding_load(struct store *st, int64_t now_s, store_binding_cb *cb,
                   void *arg)
{
    return st->ops->binding_load(st, now_s, cb, arg);
}

int
store_pushdev_load(struct store *st, int64_t idle_before_s,
                   store_pushdev_cb *cb, void *arg)
{
    return st->ops->pushdev_load(st, idle_before_s, cb, arg);
}

int
store_prov_load(struct store *st, store_prov_cb *cb, void *arg)
{
    return st->ops->prov_load(st, NULL, cb, arg);
}

struct prov_one {
    store_prov_cb *cb;
    void *arg;
    bool found;
};

static int
prov_one(const struct store_prov *p, void *arg)
{
    struct prov_one *o = arg;
    o->found = true;
    return o->cb(p, o->arg);
}

int
store_prov_read(struct store *st, const char *ext, store_prov_cb *cb,
                void *arg)
{
    struct prov_one o = {.cb = cb, .arg = arg};
    if (!ext)
        return -EINVAL;
    int rc = st->ops->prov_load(st, ext, prov_one, &o);
    return rc == 0 && !o.found ? -ENOENT : rc;
}

int
store_msg_load(struct store *st, const char *ext, int64_t now_s, bool bodies,
               store_msg_cb *cb, void *arg)
{
    return st->ops->msg_load(st, ext, now_s, bodies, cb, arg);
}

int
store_msg_counts(struct store *st, int64_t now_s, store_msg_count_cb *cb,
                 void *arg)
{
    return st->ops->msg_counts(st, now_s, cb, arg);
}

int
store_msg_last_id(struct store *st, uint64_t *out)
{
    return st->ops->msg_last_id(st, out);
}

int
store_msg_id_block(struct store *st, uint64_t *first)
{
    *first = 0;
    if (!st->ops->msg_id_block)
        return -ENOTSUP;
    return st->ops->msg_id_block(st, first);
}

int
store_schema_version(struct store *st, int *out)
{
    return st->ops->schema_version(st, out);
}

int
store_node_load(struct store *st, store_node_cb *cb, void *arg)
{
    return st->ops->node_load(st, cb, arg);
}

int
store_call_put(struct store *st, const struct store_call *c, unsigned keep)
{
    if (!c->call_id || !c->call_id[0])
        return -EINVAL;
    struct op *o = op_new(OP_CALL_PUT);
    int64_t flags = (c->media ? STORE_CALL_MEDIA : 0) |
                    (c->media_stats ? STORE_CALL_MEDIA_STATS : 0) |
                    (c->media_one_way ? STORE_CALL_ONE_WAY : 0) |
                    (c->media_none ? STORE_CALL_NO_MEDIA : 0);

    o->s[0] = dup_or_empty(c->node ? c->node : st->node);
    o->s[1] = dup_or_empty(c->call_id);
    o->s[2] = dup_or_empty(c->caller);
    o->s[3] = dup_or_empty(c->callee);
    o->s[4] = dup_or_empty(c->outcome);
    o->s[5] = dup_or_empty(c->answered_by);
    o->i[0] = c->status;
    o->i[1] = c->branches;
    o->i[2] = c->started_ms;
    o->i[3] = c->ringing_ms;
    o->i[4] = c->ended_ms;
    for (int l = 0; l < 2; l++) {
        const struct store_call_leg *g = &c->leg[l];
        if (g->has_lost)
            flags |= STORE_CALL_LEG_LOST << (2 * l);
        if (g->has_jitter)
            flags |= STORE_CALL_LEG_JITTER << (2 * l);
        /* counters above INT64_MAX do not happen; keep the column signed */
        o->i[6 + 4 * l] = (int64_t)(g->packets & INT64_MAX);
        o->i[7 + 4 * l] = (int64_t)(g->bytes & INT64_MAX);
        o->i[8 + 4 * l] = (int64_t)(g->lost & INT64_MAX);
        o->i[9 + 4 * l] = (int64_t)(g->jitter & INT64_MAX);
    }
    o->i[5] = flags;
    o->i[14] = keep;
    return enqueue(st, o);
}

void
store_call_from_row(struct store_call *c, uint64_t id,
                    const char *const strs[6], const int64_t ints[14])
{
    int64_t f = ints[5];

    *c = (struct store_call){
        .id = id,
        .node = strs[0],
        .call_id = strs[1],
        .caller = strs[2],
        .callee = strs[3],
        .outcome = strs[4],
        .answered_by = strs[5],
        .status = (int)ints[0],
        .branches = (unsigned)ints[1],
        .started_ms = ints[2],
        .ringing_ms = ints[3],
        .ended_ms = ints[4],
        .media = f & STORE_CALL_MEDIA,
        .media_stats = f & STORE_CALL_MEDIA_STATS,
        .media_one_way = f & STORE_CALL_ONE_WAY,
        .media_none = f & STORE_CALL_NO_MEDIA,
    };
    for (int l = 0; l < 2; l++) {
        struct store_call_leg *g = &c->leg[l];
        g->has_lost = f & (STORE_CALL_LEG_LOST << (2 * l));
        g->has_jitter = f & (STORE_CALL_LEG_JITTER << (2 * l));
        g->packets = (uint64_t)ints[6 + 4 * l];
        g->bytes = (uint64_t)ints[7 + 4 * l];
        g->lost = (uint64_t)ints[8 + 4 * l];
        g->jitter = (uint64_t)ints[9 + 4 * l];
    }
}

int
store_call_load(struct store *st, size_t limit, store_call_cb *cb, void *arg)
{
    if (limit == 0)
        return 0;
    return st->ops->call_load(st, limit, cb, arg);
}

int
store_watch(struct store *st, store_change_cb *cb, void *arg)
{
    return st->ops->watch(st, cb, arg);
}

int
store_ext_read(struct store *st, const char *ext, int64_t now_s,
               store_ext_cb *ecb, store_binding_cb *bcb,
               store_pushdev_cb *pcb, void *arg)
{
    if (!ext || !ext[0])
        return -ENOENT;
    return st->ops->ext_read(st, ext, now_s, ecb, bcb, pcb, arg);
}
