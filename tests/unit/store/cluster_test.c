/*
 * cluster_test: the store's side of the cluster (store.h "cluster") and
 * the schema version, on the backend under test (testdb.h): the schema
 * is at STORE_SCHEMA_VERSION and migrates once; a newer database is
 * refused; node heartbeats round-trip; a binding keeps its node;
 * store_ext_read gives one extension's rows; store_binding_del_node
 * spares another node's row. On PostgreSQL also: a write
 * of a second store with another node name reaches the first store's
 * watch callback (its own writes do not), cb(NULL, NULL) comes after the
 * listener connects and again after the server restarts; and a server
 * killed under load neither crashes the store nor loses a write whose
 * commit was acknowledged.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store.h"
#include "testdb.h"

static int
setup(void **state)
{
    *state = tdb_fixture_new("cluster", 20, "a");
    return 0;
}

static int
teardown(void **state)
{
    tdb_fixture_free(*state);
    return 0;
}

static struct store_ext
ext(const char *number)
{
    return (struct store_ext){.number = number,
                              .display = "D",
                              .realm = "r",
                              .ha1_md5 = "m",
                              .ha1_sha256 = "s",
                              .enabled = true,
                              .max_push_devices = 2};
}

static struct store_binding
binding(const char *ext, const char *key, int64_t expires_at, const char *node)
{
    return (struct store_binding){.ext = ext,
                                  .key = key,
                                  .uri = key,
                                  .params = "",
                                  .instance = "",
                                  .call_id = "c",
                                  .cseq = 4000000000u,
                                  .expires_at = expires_at,
                                  .updated_at = 5,
                                  .source = "127.0.0.1:5062",
                                  .transport = 1,
                                  .flow_id = 9,
                                  .user_agent = "ua",
                                  .node = node};
}

static void
test_schema_version(void **state)
{
    struct tdb_fixture *f = *state;
    int v = 0;

    struct store *st = tdb_fixture_open(f, "a");
    assert_int_equal(store_schema_version(st, &v), 0);
    assert_int_equal(v, STORE_SCHEMA_VERSION);
    store_close(st);
    /* Opened again: nothing runs twice. */
    st = tdb_fixture_open(f, "a");
    store_close(st);
    assert_int_equal(tdb_count(&f->cfg, "SELECT count(*) FROM schema_version"),
                     STORE_SCHEMA_VERSION);
    assert_int_equal(tdb_count(&f->cfg, "SELECT count(*) FROM nodes"), 0);
    assert_int_equal(
        tdb_count(&f->cfg, "SELECT count(*) FROM bindings WHERE node=''"), 0);

    /* A database a newer pushpbx migrated is refused, not written. */
    struct tdb *d = tdb_open(&f->cfg);
    assert_int_equal(tdb_exec(d, "INSERT INTO schema_version VALUES(99, 0)"),
                     0);
    tdb_close(d);
    char err[512];
    assert_int_equal(store_open(&f->cfg, &st, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "schema version 99 is newer"));
}

struct nodes {
    int n;
    char rows[4][128];
};

static int
node_cb(const struct store_node *n, void *arg)
{
    struct nodes *x = arg;
    assert_true(x->n < 4);
    snprintf(x->rows[x->n++], sizeof(x->rows[0]), "%s|%s|%lld|%lld|%lld",
             n->name, n->advertise, (long long)n->started_at,
             (long long)n->last_seen, (long long)n->calls);
    return 0;
}

static int
cmp_rows(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void
test_node_beat_load(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "a");

    struct store_node a = {.name = "a",
                           .advertise = "sip:127.0.0.2:5070",
                           .started_at = 100,
                           .last_seen = 101};
    struct store_node b = {.name = "b",
                           .advertise = "sip:127.0.0.3:5070",
                           .started_at = 90,
                           .last_seen = 95};
    assert_int_equal(store_node_beat(st, &a), 0);
    assert_int_equal(store_node_beat(st, &b), 0);
    a.last_seen = 102; /* the next heartbeat updates the row */
    a.calls = 3;       /* with its calls (schema 5) */
    assert_int_equal(store_node_beat(st, &a), 0);
    struct store_node bad = {.name = ""};
    assert_int_equal(store_node_beat(st, &bad), -EINVAL);
    assert_int_equal(store_sync(st), 0);
    struct nodes x = {0};
    assert_int_equal(store_node_load(st, node_cb, &x), 0);
    assert_int_equal(x.n, 2);
    qsort(x.rows, (size_t)x.n, sizeof(x.rows[0]), cmp_rows);
    assert_string_equal(x.rows[0], "a|sip:127.0.0.2:5070|100|102|3");
    assert_string_equal(x.rows[1], "b|sip:127.0.0.3:5070|90|95|0");
    store_close(st);
}

struct ext_rows {
    int exts, binds, pds;
    char line[512];
};

static int
er_ext(const struct store_ext *e, void *arg)
{
    struct ext_rows *x = arg;
    x->exts++;
    size_t n = strlen(x->line);
    snprintf(x->line + n, sizeof(x->line) - n, "E:%s/%s/%u ", e->number,
             e->display, e->max_push_devices);
    return 0;
}

static int
er_bind(const struct store_binding *b, void *arg)
{
    struct ext_rows *x = arg;
    x->binds++;
    size_t n = strlen(x->line);
    snprintf(x->line + n, sizeof(x->line) - n, "B:%s/%s/%u/%s ", b->ext, b->key,
             b->cseq, b->node);
    return 0;
}

static int
er_pd(const struct store_pushdev *d, void *arg)
{
    struct ext_rows *x = arg;
    x->pds++;
    size_t n = strlen(x->line);
    snprintf(x->line + n, sizeof(x->line) - n, "P:%s/%s ", d->ext, d->prid);
    return 0;
}

static int
bind_node_cb(const struct store_binding *b, void *arg)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 128 - n, "%s=%s ", b->key, b->node);
    return 0;
}

static void
test_binding_node_and_ext_read(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "a");
    struct store_mark m = store_mark(st);

    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(st, &e), 0);
    struct store_ext other = ext("101");
    assert_int_equal(store_ext_put(st, &other), 0);
    struct store_binding b1 = binding("100", "k1", 1000, "b");
    struct store_binding b2 = binding("100", "k2", 10, "b"); /* expired */
    struct store_binding b3 = binding("101", "k3", 1000, NULL);
    assert_int_equal(store_binding_put(st, &b1), 0);
    assert_int_equal(store_binding_put(st, &b2), 0);
    assert_int_equal(store_binding_put(st, &b3), 0);
    struct store_pushdev d = {.ext = "100",
                              .provider = "fcm",
                              .prid = "t1",
                              .param = "p",
                              .instance = "",
                              .created_at = 1,
                              .last_seen = 2};
    assert_int_equal(store_pushdev_put(st, &d), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);

    struct ext_rows x = {0};
    assert_int_equal(store_ext_read(st, "100", 500, er_ext, er_bind, er_pd, &x),
                     0);
    assert_string_equal(x.line, "E:100/D/2 B:100/k1/4000000000/b P:100/t1 ");
    /* Callbacks may be NULL. */
    memset(&x, 0, sizeof(x));
    assert_int_equal(store_ext_read(st, "100", 500, NULL, er_bind, NULL, &x),
                     0);
    assert_int_equal(x.binds, 1);
    assert_int_equal(x.exts + x.pds, 0);
    /* No extension row: -ENOENT, nothing called (its bindings may be
     * there: the row is what counts). */
    memset(&x, 0, sizeof(x));
    assert_int_equal(store_ext_read(st, "999", 500, er_ext, er_bind, er_pd, &x),
                     -ENOENT);
    assert_int_equal(x.exts + x.binds + x.pds, 0);
    /* The load gives each binding's node ("" for none). */
    char seen[128] = "";
    assert_int_equal(store_binding_load(st, 500, bind_node_cb, seen), 0);
    assert_true(strstr(seen, "k1=b ") != NULL);
    assert_true(strstr(seen, "k3= ") != NULL);
    assert_true(strstr(seen, "k2") == NULL);
    store_close(st);
}

/* store_binding_del_node deletes a row only while it names that node;
 * on PostgreSQL, a write batch committed after failed ones counts in
 * store_stats.recoveries (what makes a node repair its rows). */
static void
test_binding_del_node(void **state)
{
    struct tdb_fixture *f = *state;
    struct store *st = tdb_fixture_open(f, "a");
    struct store_mark m = store_mark(st);

    struct store_binding b1 = binding("100", "k1", 1000, "a");
    struct store_binding b2 = binding("100", "k2", 1000, "b");
    assert_int_equal(store_binding_put(st, &b1), 0);
    assert_int_equal(store_binding_put(st, &b2), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    m = store_mark(st);
    assert_int_equal(store_binding_del_node(st, "100", "k1", "a"), 0);
    assert_int_equal(store_binding_del_node(st, "100", "k2", "a"), 0);
    assert_int_equal(store_binding_del_node(st, "100", "k9", "a"), 0);
    assert_int_equal(store_commit(st, m, 2000), 0);
    char seen[128] = "";
    assert_int_equal(store_binding_load(st, 500, bind_node_cb, seen), 0);
    assert_string_equal(seen, "k2=b ");

    struct store_stats ss;
    store_get_stats(st, &ss);
    assert_int_equal(ss.recoveries, 0);
    if (tdb_pg()) {
        assert_int_equal(tdb_server_stop("fast"), 0);
        m = store_mark(st);
        assert_int_equal(store_binding_put(st, &b1), 0);
        assert_int_equal(store_commit(st, m, 5000), -EIO);
        assert_int_equal(tdb_server_start(), 0);
        m = store_mark(st);
        assert_int_equal(store_binding_put(st, &b1), 0);
        assert_int_equal(store_commit(st, m, 5000), 0);
        store_get_stats(st, &ss);
        assert_int_equal(ss.recoveries, 1);
        m = store_mark(st);
        assert_int_equal(store_binding_put(st, &b2), 0);
        assert_int_equal(store_commit(st, m, 5000), 0);
        store_get_stats(st, &ss);
        assert_int_equal(ss.recoveries, 1); /* once an outage */
    }
    store_close(st);
}

/* ---- the change feed --------------------------------------------------- */

struct feed {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int resyncs;
    int events;
    char log[2048]; /* "ext<origin " per event */
};

static void
feed_cb(const char *ext, const char *origin, void *arg)
{
    struct feed *fd = arg;
    pthread_mutex_lock(&fd->mu);
    if (!ext) {
        assert_null(origin);
        fd->resyncs++;
    } else {
        fd->events++;
        size_t n = strlen(fd->log);
        snprintf(fd->log + n, sizeof(fd->log) - n, "%s<%s ", ext, origin);
    }
    pthread_cond_broadcast(&fd->cv);
    pthread_mutex_unlock(&fd->mu);
}

static void
feed_init(struct feed *fd)
{
    memset(fd, 0, sizeof(*fd));
    pthread_mutex_init(&fd->mu, NULL);
    pthread_cond_init(&fd->cv, NULL);
}

/* Wait (at most 15 s) until the log holds want / resyncs reach n. */
static bool
feed_wait(struct feed *fd, const char *want, int resyncs)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 15;
    pthread_mutex_lock(&fd->mu);
    while (!((want ? strstr(fd->log, want) != NULL : true) &&
             fd->resyncs >= resyncs)) {
        if (pthread_cond_timedwait(&fd->cv, &fd->mu, &until) == ETIMEDOUT)
            break;
    }
    bool ok =
        (want ? strstr(fd->log, want) != NULL : true) && fd->resyncs >= resyncs;
    pthread_mutex_unlock(&fd->mu);
    return ok;
}

static void
test_watch(void **state)
{
    struct tdb_fixture *f = *state;
    struct feed fd;
    feed_init(&fd);

    struct store *a = tdb_fixture_open(f, "a");
    assert_int_equal(store_watch(a, feed_cb, &fd), 0);
    if (!tdb_pg()) {
        /* One node: nothing to hear, ever. */
        struct store_ext e = ext("100");
        assert_int_equal(store_ext_put(a, &e), 0);
        assert_int_equal(store_sync(a), 0);
        store_close(a);
        assert_int_equal(fd.resyncs + fd.events, 0);
        return;
    }
    assert_int_equal(store_watch(a, feed_cb, &fd), -EBUSY);
    assert_true(feed_wait(&fd, NULL, 1)); /* connected */
    struct store *b = tdb_fixture_open(f, "b");

    /* Our own write first, then b's: b's arrives, ours never does
     * (notifications come in commit order). */
    struct store_mark m = store_mark(a);
    struct store_ext own = ext("200");
    assert_int_equal(store_ext_put(a, &own), 0);
    assert_int_equal(store_commit(a, m, 2000), 0);
    m = store_mark(b);
    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(b, &e), 0);
    assert_int_equal(store_commit(b, m, 2000), 0);
    assert_true(feed_wait(&fd, "100<b ", 1));
    /* Each kind of row of an extension notifies: a binding, a push
     * device, a message (bodies binary). */
    m = store_mark(b);
    struct store_binding bd = binding("101", "k", 1000, "b");
    assert_int_equal(store_binding_put(b, &bd), 0);
    struct store_pushdev d = {.ext = "102",
                              .provider = "apns",
                              .prid = "t",
                              .param = "p",
                              .instance = "",
                              .created_at = 1,
                              .last_seen = 2};
    assert_int_equal(store_pushdev_put(b, &d), 0);
    struct store_msg msg = {.id = 7,
                            .ext = "103",
                            .sender_uri = "sip:x@y",
                            .content_type = "application/octet-stream",
                            .body = "\0\1\2",
                            .body_len = 3,
                            .received_at = 1,
                            .expires_at = 9999999999};
    assert_int_equal(store_msg_put(b, &msg, 0), 0);
    assert_int_equal(store_commit(b, m, 2000), 0);
    assert_true(feed_wait(&fd, "101<b ", 1));
    assert_true(feed_wait(&fd, "102<b ", 1));
    assert_true(feed_wait(&fd, "103<b ", 1));
    /* A deletion too; the listener can read the extension in its
     * callback's place (store_ext_read from another thread here). */
    pthread_mutex_lock(&fd.mu);
    int before = fd.events;
    pthread_mutex_unlock(&fd.mu);
    m = store_mark(b);
    assert_int_equal(store_binding_del(b, "101", "k"), 0);
    assert_int_equal(store_commit(b, m, 2000), 0);
    struct ext_rows x = {0};
    assert_int_equal(store_ext_read(a, "100", 0, er_ext, NULL, NULL, &x), 0);
    assert_int_equal(x.exts, 1);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 15;
    pthread_mutex_lock(&fd.mu);
    while (fd.events == before &&
           pthread_cond_timedwait(&fd.cv, &fd.mu, &until) != ETIMEDOUT)
        ;
    assert_true(fd.events > before);
    assert_null(strstr(fd.log, "200<"));
    pthread_mutex_unlock(&fd.mu);
    store_close(b);
    store_close(a);
}

/* Write through b, commit, then a marker extension through b: once the
 * marker arrived, every notification of the write did too (commit order).
 * Returns the events for extension num that came with it. */
static int
events_of(struct feed *fd, struct store *b, const char *num,
          const struct store_binding *w, const char *marker)
{
    pthread_mutex_lock(&fd->mu);
    fd->log[0] = '\0';
    pthread_mutex_unlock(&fd->mu);
    struct store_mark m = store_mark(b);
    assert_int_equal(store_binding_put(b, w), 0);
    assert_int_equal(store_commit(b, m, 2000), 0);
    m = store_mark(b);
    struct store_ext e = ext(marker);
    assert_int_equal(store_ext_put(b, &e), 0);
    assert_int_equal(store_commit(b, m, 2000), 0);
    char want[64], got[64];
    snprintf(want, sizeof(want), "%s<b ", marker);
    assert_true(feed_wait(fd, want, 1));
    snprintf(got, sizeof(got), "%s<b ", num);
    int n = 0;
    pthread_mutex_lock(&fd->mu);
    for (const char *p = fd->log; (p = strstr(p, got)) != NULL; p++)
        n++;
    pthread_mutex_unlock(&fd->mu);
    return n;
}

/* Silent refreshes (schema version 6): an update of a binding that only
 * moves its expiry and bookkeeping (cseq, call_id, source, user_agent,
 * updated_at, transport, flow_id) notifies no one; a new binding, a
 * changed uri, params, instance, reg_id or node, and a delete do. */
static void
test_refresh_is_silent(void **state)
{
    struct tdb_fixture *f = *state;
    struct feed fd;
    feed_init(&fd);

    struct store *a = tdb_fixture_open(f, "a");
    assert_int_equal(store_watch(a, feed_cb, &fd), 0);
    struct store_ext e = ext("300");
    struct store_binding w = binding("300", "k", 1000, "b");
    if (!tdb_pg()) {
        /* One node: no triggers, nothing to hear, a refresh written. */
        struct store_mark m = store_mark(a);
        assert_int_equal(store_ext_put(a, &e), 0);
        assert_int_equal(store_binding_put(a, &w), 0);
        w.expires_at = 2000;
        w.cseq = 4000000001u;
        assert_int_equal(store_binding_put(a, &w), 0);
        assert_int_equal(store_commit(a, m, 2000), 0);
        struct ext_rows x = {0};
        assert_int_equal(
            store_ext_read(a, "300", 500, NULL, er_bind, NULL, &x), 0);
        assert_string_equal(x.line, "B:300/k/4000000001/b ");
        store_close(a);
        assert_int_equal(fd.resyncs + fd.events, 0);
        return;
    }
    assert_true(feed_wait(&fd, NULL, 1)); /* connected */
    struct store *b = tdb_fixture_open(f, "b");
    struct store_mark m = store_mark(b);
    assert_int_equal(store_ext_put(b, &e), 0);
    assert_int_equal(store_commit(b, m, 2000), 0);
    assert_true(feed_wait(&fd, "300<b ", 1));

    assert_int_equal(events_of(&fd, b, "300", &w, "901"), 1); /* new */
    /* Refreshes: each field alone, then all of them at once. */
    w.expires_at = 2000;
    assert_int_equal(events_of(&fd, b, "300", &w, "902"), 0);
    w.updated_at = 6;
    w.cseq = 4000000001u;
    assert_int_equal(events_of(&fd, b, "300", &w, "903"), 0);
    w.call_id = "c2";
    w.source = "127.0.0.1:5064";
    w.user_agent = "ua2";
    w.transport = 2;
    w.flow_id = 10;
    w.path = "<sip:p;lr>";
    w.expires_at = 3000;
    assert_int_equal(events_of(&fd, b, "300", &w, "904"), 0);
    /* Written all the same. */
    struct ext_rows x = {0};
    assert_int_equal(store_ext_read(a, "300", 500, NULL, er_bind, NULL, &x),
                     0);
    assert_string_equal(x.line, "B:300/k/4000000001/b ");
    /* What other nodes route on. */
    w.uri = "sip:300@127.0.0.1:5999";
    assert_int_equal(events_of(&fd, b, "300", &w, "905"), 1);
    w.params = ";pn-provider=apns";
    assert_int_equal(events_of(&fd, b, "300", &w, "906"), 1);
    w.instance = "<urn:uuid:1>";
    assert_int_equal(events_of(&fd, b, "300", &w, "907"), 1);
    w.reg_id = 2;
    assert_int_equal(events_of(&fd, b, "300", &w, "908"), 1);
    w.node = "c"; /* the phone moved to node c */
    assert_int_equal(events_of(&fd, b, "300", &w, "909"), 1);
    /* Another binding of the extension: new, notifies. */
    struct store_binding w2 = binding("300", "k2", 1000, "b");
    assert_int_equal(events_of(&fd, b, "300", &w2, "910"), 1);
    /* A delete notifies (the holding node's expiry: reg_expire). */
    pthread_mutex_lock(&fd.mu);
    fd.log[0] = '\0';
    pthread_mutex_unlock(&fd.mu);
    m = store_mark(b);
    assert_int_equal(store_binding_del(b, "300", "k"), 0);
    assert_int_equal(store_commit(b, m, 2000), 0);
    assert_true(feed_wait(&fd, "300<b ", 1));
    store_close(b);
    store_close(a);
}

static void
test_watch_reconnect(void **state)
{
    struct tdb_fixture *f = *state;
    struct feed fd;
    feed_init(&fd);

    struct store *a = tdb_fixture_open(f, "a");
    assert_int_equal(store_watch(a, feed_cb, &fd), 0);
    if (!tdb_pg()) {
        store_close(a);
        assert_int_equal(fd.resyncs, 0);
        return;
    }
    assert_true(feed_wait(&fd, NULL, 1));
    struct store *b = tdb_fixture_open(f, "b");
    assert_int_equal(tdb_server_stop("fast"), 0);
    assert_int_equal(tdb_server_start(), 0);
    /* The listener is back and says so: resync. */
    assert_true(feed_wait(&fd, NULL, 2));
    /* The writer of b finds its connection gone and makes a new one:
     * the commit still succeeds, and a hears it. */
    struct store_mark m = store_mark(b);
    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(b, &e), 0);
    assert_int_equal(store_commit(b, m, 5000), 0);
    assert_true(feed_wait(&fd, "100<b ", 2));
    /* The reader of a too. */
    struct ext_rows x = {0};
    assert_int_equal(store_ext_read(a, "100", 0, er_ext, NULL, NULL, &x), 0);
    assert_int_equal(x.exts, 1);
    store_close(b);
    store_close(a);
}

/* ---- the server killed under load ---------------------------------------- */

enum { CHUNKS = 400, PER_CHUNK = 10 };

struct load {
    struct store *st;
    bool acked[CHUNKS];
    int sent, failed;
};

static void *
load_main(void *arg)
{
    struct load *l = arg;
    char key[32];

    for (int c = 0; c < CHUNKS; c++) {
        struct store_mark m = store_mark(l->st);
        for (int k = 0; k < PER_CHUNK; k++) {
            snprintf(key, sizeof(key), "c%d-%d", c, k);
            struct store_binding b = binding("100", key, 9999999999, "a");
            (void)store_binding_put(l->st, &b);
        }
        int rc = store_commit(l->st, m, 10000);
        l->acked[c] = rc == 0;
        l->failed += rc != 0;
        if (rc != 0)
            usleep(20 * 1000); /* a client retrying later */
        __atomic_store_n(&l->sent, c + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void
test_server_killed_under_load(void **state)
{
    struct tdb_fixture *f = *state;
    struct load l = {0};
    pthread_t t;

    l.st = tdb_fixture_open(f, "a");
    if (!tdb_pg()) {
        /* SQLite has no server to lose: the load alone. */
        assert_int_equal(pthread_create(&t, NULL, load_main, &l), 0);
        pthread_join(t, NULL);
        assert_int_equal(l.failed, 0);
        store_close(l.st);
        assert_int_equal(tdb_count(&f->cfg, "SELECT count(*) FROM bindings"),
                         CHUNKS * PER_CHUNK);
        return;
    }
    assert_int_equal(pthread_create(&t, NULL, load_main, &l), 0);
    while (__atomic_load_n(&l.sent, __ATOMIC_ACQUIRE) < 20)
        usleep(1000);
    /* A crash: no shutdown checkpoint, recovery from the WAL at start. */
    assert_int_equal(tdb_server_stop("immediate"), 0);
    usleep(300 * 1000); /* commits fail meanwhile (-EIO), no crash */
    assert_int_equal(tdb_server_start(), 0);
    pthread_join(t, NULL);
    assert_int_equal(l.sent, CHUNKS);
    /* Working again after the restart. */
    struct store_mark m = store_mark(l.st);
    struct store_ext e = ext("100");
    assert_int_equal(store_ext_put(l.st, &e), 0);
    assert_int_equal(store_commit(l.st, m, 5000), 0);
    store_close(l.st);
    /* Every acknowledged chunk is there, whole. */
    struct tdb *d = tdb_open(&f->cfg);
    int acked = 0;
    char sql[160];
    for (int c = 0; c < CHUNKS; c++) {
        if (!l.acked[c])
            continue;
        acked++;
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM bindings WHERE bkey LIKE 'c%d-%%'", c);
        if (tdb_int(d, sql) != PER_CHUNK)
            fail_msg("chunk %d acknowledged but not all there", c);
    }
    tdb_close(d);
    print_message("killed under load: %d of %d chunks acknowledged, %d "
                  "failed\n",
                  acked, CHUNKS, l.failed);
    /* Some failed while the server was down, and the load went on once
     * it was back. */
    assert_true(l.failed > 0);
    assert_true(l.acked[CHUNKS - 1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_beat_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binding_node_and_ext_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_binding_del_node, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_is_silent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_watch_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_killed_under_load, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
