/*
 * state: what the HTTPS loop thread and the control thread share: the
 * record of pushes received, dead tokens, queued faults and counters, all
 * under one mutex held for microseconds at a time.
 *
 * Push records are kept already serialised (one compact JSON text each,
 * the same line the JSONL log gets), in a ring of at most PSIM_PUSH_KEEP
 * entries and PSIM_PUSH_KEEP_BYTES bytes; the oldest go first. Seqs are
 * consecutive, so "since=SEQ" is an index computation, not a scan. Seqs
 * keep counting across POST /reset so a client's "since" stays valid.
 *
 * The fault queue is a short FIFO (capped at PSIM_FAULTS_MAX); taking a
 * fault scans it from the front, which is O(queued faults), not O(pushes).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/xmalloc.h"
#include "pushsim/pushsim_int.h"

void
psim_state_init(struct psim_state *st, FILE *log)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_init(&st->lock, NULL);
    st->ring = xcalloc(PSIM_PUSH_KEEP, sizeof(*st->ring));
    st->first_seq = 1;
    st->next_seq = 1;
    psim_map_init(&st->dead, free);
    list_init(&st->faults);
    st->log = log;
}

static void
ring_clear(struct psim_state *st)
{
    for (size_t i = 0; i < st->ring_count; i++) {
        size_t at = (st->ring_head + i) % PSIM_PUSH_KEEP;
        free(st->ring[at]);
        st->ring[at] = NULL;
    }
    st->ring_head = st->ring_count = st->ring_bytes = 0;
    st->first_seq = st->next_seq;
}

static void
faults_clear(struct psim_state *st)
{
    struct list_node *n, *tmp;

    list_for_each_safe(n, tmp, &st->faults)
    {
        list_remove(n);
        free(container_of(n, struct psim_fault, node));
    }
    st->nfaults = 0;
}

void
psim_state_fini(struct psim_state *st)
{
    ring_clear(st);
    free(st->ring);
    faults_clear(st);
    psim_map_fini(&st->dead);
    pthread_mutex_destroy(&st->lock);
}

bool
psim_state_take_fault(struct psim_state *st, enum psim_provider p,
                      struct psim_fault *out)
{
    struct list_node *n, *tmp;
    bool found = false;

    pthread_mutex_lock(&st->lock);
    list_for_each_safe(n, tmp, &st->faults)
    {
        struct psim_fault *f = container_of(n, struct psim_fault, node);
        if (f->provider >= 0 && f->provider != (int)p)
            continue;
        *out = *f;
        found = true;
        if (--f->remaining == 0) {
            list_remove(n);
            free(f);
            st->nfaults--;
        }
        break;
    }
    pthread_mutex_unlock(&st->lock);
    return found;
}

bool
psim_state_is_dead(struct psim_state *st, struct slice token, uint64_t *ms)
{
    uint64_t *v;

    pthread_mutex_lock(&st->lock);
    v = st->dead.count ? psim_map_get(&st->dead, token) : NULL;
    if (v != NULL)
        *ms = *v;
    pthread_mutex_unlock(&st->lock);
    return v != NULL;
}

void
psim_state_record(struct psim_state *st, enum psim_provider p, json_t *rec,
                  int status)
{
    /* Serialise outside the lock; the seq is spliced in front under it. */
    char *body = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t body_len, len;
    char *line;
    char head[40];
    int hn;

    if (body == NULL)
        return;
    body_len = strlen(body); /* "{...}" with at least "{}" */
    pthread_mutex_lock(&st->lock);
    hn = snprintf(head, sizeof(head), "{\"seq\":%llu%s",
                  (unsigned long long)st->next_seq, body_len > 2 ? "," : "");
    len = (size_t)hn + body_len - 1;
    line = xmalloc(len + 1);
    memcpy(line, head, (size_t)hn);
    memcpy(line + hn, body + 1, body_len); /* includes the NUL */
    while (st->ring_count > 0 &&
           (st->ring_count == PSIM_PUSH_KEEP ||
            st->ring_bytes + len > PSIM_PUSH_KEEP_BYTES)) {
        char *old = st->ring[st->ring_head];
        st->ring_bytes -= strlen(old);
        free(old);
        st->ring[st->ring_head] = NULL;
        st->ring_head = (st->ring_head + 1) % PSIM_PUSH_KEEP;
        st->ring_count--;
        st->first_seq++;
    }
    st->ring[(st->ring_head + st->ring_count) % PSIM_PUSH_KEEP] = line;
    st->ring_count++;
    st->ring_bytes += len;
    st->next_seq++;
    if (status >= 0 && status < 600)
        st->by_status[p][status]++;
    if (st->log != NULL) {
        fwrite(line, 1, len, st->log);
        fputc('\n', st->log);
        st->log_dirty = true;
    }
    pthread_mutex_unlock(&st->lock);
    free(body);
}

void
psim_state_flush_log(struct psim_state *st)
{
    pthread_mutex_lock(&st->lock);
    if (st->log != NULL && st->log_dirty) {
        fflush(st->log);
        st->log_dirty = false;
    }
    pthread_mutex_unlock(&st->lock);
}

int
psim_state_add_dead(struct psim_state *st, struct slice token)
{
    uint64_t *ms = xmalloc(sizeof(*ms));
    int rc = 0;

    *ms = psim_now_ms();
    pthread_mutex_lock(&st->lock);
    if (psim_map_get(&st->dead, token) == NULL &&
        st->dead.count >= PSIM_DEAD_MAX) {
        rc = -ENOSPC;
        free(ms);
    } else {
        psim_map_put(&st->dead, token, ms);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int
psim_state_add_fault(struct psim_state *st, const struct psim_fault *f)
{
    struct psim_fault *copy;
    int rc = 0;

    pthread_mutex_lock(&st->lock);
    if (st->nfaults >= PSIM_FAULTS_MAX) {
        rc = -ENOSPC;
    } else {
        copy = xmalloc(sizeof(*copy));
        *copy = *f;
        list_push_back(&st->faults, &copy->node);
        st->nfaults++;
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void
psim_state_reset(struct psim_state *st)
{
    pthread_mutex_lock(&st->lock);
    ring_clear(st);
    faults_clear(st);
    psim_map_clear(&st->dead);
    pthread_mutex_unlock(&st->lock);
}

char *
psim_state_pushes_json(struct psim_state *st, uint64_t since, size_t *len)
{
    struct buf b;
    size_t skip = 0;

    buf_init(&b, 0);
    buf_append_cstr(&b, "{\"pushes\":[");
    pthread_mutex_lock(&st->lock);
    if (since >= st->first_seq)
        skip = since - st->first_seq + 1;
    for (size_t i = skip; i < st->ring_count; i++) {
        if (i > skip)
            buf_append(&b, ",", 1);
        buf_append_cstr(&b, st->ring[(st->ring_head + i) % PSIM_PUSH_KEEP]);
    }
    pthread_mutex_unlock(&st->lock);
    buf_append_cstr(&b, "]}");
    *len = b.len;
    return b.data; /* ownership moves to the caller */
}

char *
psim_state_stats_json(struct psim_state *st, size_t *len)
{
    static const char *const names[PSIM_PROVIDERS] = {"apns", "fcm"};
    json_t *o = json_object(), *pushes = json_object();
    char key[8], *s;

    json_object_set_new(o, "connections",
                        json_integer((json_int_t)st->connections));
    json_object_set_new(o, "streams", json_integer((json_int_t)st->streams));
    json_object_set_new(o, "tokens_issued",
                        json_integer((json_int_t)st->tokens_issued));
    pthread_mutex_lock(&st->lock);
    for (int p = 0; p < PSIM_PROVIDERS; p++) {
        json_t *byst = json_object();
        uint64_t total = 0;
        for (int s = 0; s < 600; s++) {
            if (st->by_status[p][s] == 0)
                continue;
            snprintf(key, sizeof(key), "%d", s);
            json_object_set_new(byst, key,
                                json_integer((json_int_t)st->by_status[p][s]));
            total += st->by_status[p][s];
        }
        json_t *po = json_object();
        json_object_set_new(po, "total", json_integer((json_int_t)total));
        json_object_set_new(po, "by_status", byst);
        json_object_set_new(pushes, names[p], po);
    }
    json_object_set_new(o, "stored", json_integer((json_int_t)st->ring_count));
    json_object_set_new(o, "dead_tokens",
                        json_integer((json_int_t)st->dead.count));
    json_object_set_new(o, "faults_queued",
                        json_integer((json_int_t)st->nfaults));
    pthread_mutex_unlock(&st->lock);
    json_object_set_new(o, "pushes", pushes);
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    *len = s ? strlen(s) : 0;
    return s;
}
