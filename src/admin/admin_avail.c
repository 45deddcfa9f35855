/*
 * admin/admin_avail: what keeps the admin server answering when clients
 * or push providers are slow (see admin_int.h and docs/admin.md,
 * "Availability").
 *
 * The request guard bounds how long a request may take to arrive. MHD's
 * own connection timeout is an idle timeout: a client that sends one byte
 * every few seconds (a slowloris) is never idle and holds its connection
 * slot for ever. The guard notes when each connection opened (or finished
 * its previous request) and a reaper thread shuts down the socket of any
 * connection whose request has not fully arrived within the limit; MHD
 * then sees EOF and closes it on its own thread. shutdown() on a socket
 * MHD owns is safe because the registry lock is held, and MHD calls
 * MHD_CONNECTION_NOTIFY_CLOSED (which takes the lock to unlink the entry)
 * before it closes the descriptor: a descriptor in the registry is open.
 *
 * The job threads run the slow routes (test push, push check: a real
 * HTTP/2 exchange with APNs/FCM, up to about 12 s) off the MHD thread. The
 * route suspends its connection (MHD_suspend_connection) and queues a job;
 * a job thread runs it, stores the answer and resumes the connection; MHD
 * then calls the request handler again, which sends the stored answer. The
 * HTTP API stays synchronous for its clients, and the MHD thread, which
 * serves every other route one at a time, never waits for a provider.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "admin/admin_int.h"
#include "base/log.h"
#include "base/xmalloc.h"

/* How often the reaper looks at the registry. A request is dropped
 * between request_timeout_s and request_timeout_s + this. */
#define GUARD_SWEEP_MS 250

static uint64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- request guard ------------------------------------------------------ */

struct guard_conn {
    struct guard_conn *prev, *next;
    int fd;
    uint64_t since_ms; /* connection opened or previous request done */
    bool arrived;      /* the request is whole: being answered */
    bool dropped;      /* shut down by the reaper */
};

struct admin_guard {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    pthread_t thread;
    bool stopping;
    uint64_t timeout_ms;
    struct guard_conn head; /* circular list of open connections */
    uint64_t dropped_total;
};

static void *
guard_main(void *arg)
{
    struct admin_guard *g = arg;
    struct timespec until;

    (void)pthread_setname_np(pthread_self(), "pbx-admin-guard");

    pthread_mutex_lock(&g->mu);
    while (!g->stopping) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += GUARD_SWEEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &until);
        if (g->stopping)
            break;
        uint64_t now = mono_ms();
        unsigned n = 0;
        for (struct guard_conn *e = g->head.next; e != &g->head; e = e->next) {
            if (e->arrived || e->dropped || now - e->since_ms < g->timeout_ms)
                continue;
            shutdown(e->fd, SHUT_RDWR); /* MHD reads EOF and closes */
            e->dropped = true;
            n++;
        }
        g->dropped_total += n;
        if (n)
            log_info("admin",
                     "dropped %u connection(s): request not received "
                     "within request_timeout_s=%llu",
                     n, (unsigned long long)(g->timeout_ms / 1000));
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int
admin_guard_start(unsigned request_timeout_s, struct admin_guard **out)
{
    struct admin_guard *g = xcalloc(1, sizeof(*g));
    pthread_condattr_t ca;
    int rc;

    g->timeout_ms = (uint64_t)request_timeout_s * 1000u;
    g->head.next = g->head.prev = &g->head;
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    rc = pthread_create(&g->thread, NULL, guard_main, g);
    if (rc != 0) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return -rc;
    }
    *out = g;
    return 0;
}

void
admin_guard_stop(struct admin_guard *g)
{
    if (!g)
        return;
    pthread_mutex_lock(&g->mu);
    g->stopping = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    /* MHD_stop_daemon ran first and closed every connection; anything
     * left would be a leak of ours, not a live connection. */
    while (g->head.next != &g->head) {
        struct guard_conn *e = g->head.next;
        g->head.next = e->next;
        free(e);
    }
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void
admin_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                   enum MHD_ConnectionNotificationCode code)
{
    struct admin_guard *g = cls;
    struct guard_conn *e;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        e = xcalloc(1, sizeof(*e));
        e->fd = ci ? ci->connect_fd : -1;
        e->since_ms = mono_ms();
        e->arrived = e->fd < 0; /* no descriptor: never reaped */
        pthread_mutex_lock(&g->mu);
        e->next = &g->head;
        e->prev = g->head.prev;
        g->head.prev->next = e;
        g->head.prev = e;
        pthread_mutex_unlock(&g->mu);
        *socket_context = e;
        return;
    }
    e = *socket_context;
    if (!e)
        return;
    pthread_mutex_lock(&g->mu);
    e->prev->next = e->next;
    e->next->prev = e->prev;
    pthread_mutex_unlock(&g->mu);
    free(e);
    *socket_context = NULL;
}

void
admin_guard_mark(struct admin_guard *g, struct MHD_Connection *c, bool arrived)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct guard_conn *e = ci ? ci->socket_context : NULL;

    if (!e)
        return;
    pthread_mutex_lock(&g->mu);
    e->arrived = arrived;
    if (!arrived)
        e->since_ms = mono_ms();
    pthread_mutex_unlock(&g->mu);
}

/* ---- job threads -------------------------------------------------------- */

struct admin_job {
    struct admin_job *next; /* queue link */
    struct MHD_Connection *conn;
    admin_job_fn *fn;
    void *ctx;
    char param[64];
    /* set by the job thread, under the jobs lock */
    bool done;
    unsigned status;
    json_t *body;
};

struct admin_jobs {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t *threads;
    unsigned thread_count;
    unsigned max_queued;
    unsigned queued; /* waiting or running */
    bool stopping;
    struct admin_job *head, *tail;
};

static void
job_finish(struct admin_jobs *js, struct admin_job *j, unsigned status,
           json_t *body)
{
    struct MHD_Connection *c = j->conn;

    pthread_mutex_lock(&js->mu);
    j->status = status;
    j->body = body;
    j->done = true;
    js->queued--;
    pthread_mutex_unlock(&js->mu);
    /* From here the MHD thread owns j again (admin_job_take), but only
     * once c is resumed: j is not touched after this line. */
    MHD_resume_connection(c);
}

static void *
jobs_main(void *arg)
{
    struct admin_jobs *js = arg;

    (void)pthread_setname_np(pthread_self(), "pbx-admin-job");

    pthread_mutex_lock(&js->mu);
    for (;;) {
        while (!js->head && !js->stopping)
            pthread_cond_wait(&js->cv, &js->mu);
        struct admin_job *j = js->head;
        if (!j)
            break; /* stopping and nothing left */
        js->head = j->next;
        if (!js->head)
            js->tail = NULL;
        bool stopping = js->stopping;
        pthread_mutex_unlock(&js->mu);
        if (stopping) {
            /* Not started: answer it so MHD can close the connection. */
            job_finish(js, j, 503,
                       json_pack("{s:s, s:i}", "error", "admin server stopping",
                                 "status", 503));
        } else {
            json_t *body = NULL;
            unsigned status = j->fn(j->ctx, j->param, &body);
            job_finish(js, j, status, body);
        }
        pthread_mutex_lock(&js->mu);
    }
    pthread_mutex_unlock(&js->mu);
    return NULL;
}

int
admin_jobs_start(unsigned threads, unsigned max_queued, struct admin_jobs **out)
{
    struct admin_jobs *js = xcalloc(1, sizeof(*js));

    js->max_queued = max_queued;
    js->threads = xcalloc(threads, sizeof(*js->threads));
    pthread_mutex_init(&js->mu, NULL);
    pthread_cond_init(&js->cv, NULL);
    for (unsigned i = 0; i < threads; i++) {
        int rc = pthread_create(&js->threads[i], NULL, jobs_main, js);
        if (rc != 0) {
            admin_jobs_stop(js);
            return -rc;
        }
        js->thread_count++;
    }
    *out = js;
    return 0;
}

void
admin_jobs_stop(struct admin_jobs *js)
{
    if (!js)
        return;
    pthread_mutex_lock(&js->mu);
    js->stopping = true;
    pthread_cond_broadcast(&js->cv);
    pthread_mutex_unlock(&js->mu);
    for (unsigned i = 0; i < js->thread_count; i++)
        pthread_join(js->threads[i], NULL);
    pthread_cond_destroy(&js->cv);
    pthread_mutex_destroy(&js->mu);
    free(js->threads);
    free(js);
}

int
admin_jobs_submit(struct admin_jobs *js, struct MHD_Connection *c,
                  admin_job_fn *fn, void *ctx, const char *param,
                  struct admin_job **out)
{
    struct admin_job *j;

    pthread_mutex_lock(&js->mu);
    if (js->stopping || js->thread_count == 0) {
        pthread_mutex_unlock(&js->mu);
        return -ESHUTDOWN;
    }
    if (js->queued >= js->max_queued) {
        pthread_mutex_unlock(&js->mu);
        return -EBUSY;
    }
    j = xcalloc(1, sizeof(*j));
    j->conn = c;
    j->fn = fn;
    j->ctx = ctx;
    snprintf(j->param, sizeof(j->param), "%s", param ? param : "");
    /* Suspend before a job thread can see it: it resumes when done. */
    MHD_suspend_connection(c);
    if (js->tail)
        js->tail->next = j;
    else
        js->head = j;
    js->tail = j;
    js->queued++;
    pthread_cond_signal(&js->cv);
    pthread_mutex_unlock(&js->mu);
    *out = j;
    return 0;
}

bool
admin_job_take(struct admin_jobs *js, struct admin_job *j, unsigned *status,
               json_t **body)
{
    bool done;

    pthread_mutex_lock(&js->mu);
    done = j->done;
    if (done) {
        *status = j->status;
        *body = j->body;
        j->body = NULL;
    }
    pthread_mutex_unlock(&js->mu);
    return done;
}

void
admin_job_free(struct admin_job *j)
{
    if (!j)
        return;
    json_decref(j->body);
    free(j);
}
