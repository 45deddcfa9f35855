/*
 * admin/admin_int: declarations shared inside the admin room: the
 * provisioning-link table (admin_prov.c), the embedded web assets
 * (generated admin_www.c), and the request guard and job threads that
 * keep the server answering (admin_avail.c).
 */
#ifndef PUSHPBX_ADMIN_ADMIN_INT_H
#define PUSHPBX_ADMIN_ADMIN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "admin/admin.h"

/* Provisioning links: one row per extension, kept by the store (table
 * prov_links of the store's database) and indexed in memory here. A row
 * holds the 128-bit link token (32 hex) and the password the link hands
 * out: the registrar keeps only HA1 values, so (re)generating a link also
 * sets a new password. Thread: the admin thread (and admin_start/
 * admin_stop); no lock. */
struct admin_prov;
struct store;

#define ADMIN_PROV_TOKEN_LEN 32
#define ADMIN_PASSWORD_LEN 20

/* A link lives until expires_at (unix s; [admin] prov_link_ttl_s after
 * creation) and serves at most max_fetches documents ([admin]
 * prov_link_max_fetches); after either, /prov/<token> answers 410. A
 * password reset deletes the row. password is "" for an extension of the
 * configuration file: the document hands out the file's password, read
 * when it is fetched, so the table never holds a copy of it. */
struct admin_prov_row {
    char ext[33];
    char token[ADMIN_PROV_TOKEN_LEN + 1];
    char password[129];
    int64_t created_at;
    int64_t expires_at;
    unsigned fetches;
    unsigned max_fetches;
};

/* Load the links from st (borrowed; NULL: memory only, for tests). First,
 * once: a provisioning file of an older version (legacy_path, [admin]
 * prov_db, deprecated) is imported into the store and renamed
 * PATH.imported (store_prov_import); a missing file is fine. Returns 0 and
 * *out (owned; admin_prov_close), or a negative errno with the reason in
 * err. Blocks for the import's commit (start-up). */
int admin_prov_open(struct store *st, const char *legacy_path,
                    struct admin_prov **out, char *err, size_t errlen);
void admin_prov_close(struct admin_prov *p);
/* From memory: 0 and *row, or -ENOENT. */
int admin_prov_by_ext(struct admin_prov *p, const char *ext,
                      struct admin_prov_row *row);
int admin_prov_by_token(struct admin_prov *p, const char *token,
                        struct admin_prov_row *row);
/* Insert or replace the row of row->ext, committed by the store before
 * return (memory changes only then). 0 or -EIO (not saved, or unknown
 * after a timeout: logged). Writes below likewise. */
int admin_prov_put(struct admin_prov *p, const struct admin_prov_row *row);
/* 0, -ENOENT or -EIO. */
int admin_prov_del(struct admin_prov *p, const char *ext);
/* Count one document served by ext's link (committed before return, so
 * the limit holds across a crash). 0, -ENOENT or -EIO. */
int admin_prov_count_fetch(struct admin_prov *p, const char *ext);

/* Embedded files of src/admin/www (generated at build time). */
struct admin_asset {
    const char *path; /* "/index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
};
extern const struct admin_asset admin_assets[];
extern const size_t admin_asset_count;

/* ---- availability (admin_avail.c) ------------------------------------- */

/* Request guard: a request must arrive whole (headers and body) within
 * request_timeout_s of its connection opening or of the previous response
 * on it; otherwise a reaper thread shuts the socket down and MHD closes
 * the connection. Install admin_guard_notify as MHD_OPTION_NOTIFY_CONNECTION
 * with the guard as cls. */
struct admin_guard;

/* Start the reaper thread. 0 and *out, or -errno. Main thread. */
int admin_guard_start(unsigned request_timeout_s, struct admin_guard **out);
/* Stop the reaper and free. Call after MHD_stop_daemon. NULL is a no-op. */
void admin_guard_stop(struct admin_guard *g);
/* MHD_NotifyConnectionCallback: registers / unregisters a connection. MHD
 * thread. */
void admin_guard_notify(void *cls, struct MHD_Connection *c,
                        void **socket_context,
                        enum MHD_ConnectionNotificationCode code);
/* The request on c has arrived whole and is being answered (arrived =
 * true), or its answer is done and the next request's clock starts
 * (false). MHD thread. */
void admin_guard_mark(struct admin_guard *g, struct MHD_Connection *c,
                      bool arrived);

/* Job threads: slow routes (test push, push check) run here, not on the
 * MHD thread. A job computes an HTTP status and a JSON body (owned, may
 * be NULL for an empty body) from its ctx and param. */
struct admin_jobs;
struct admin_job;
typedef unsigned admin_job_fn(void *ctx, const char *param, json_t **body);

/* Start threads job threads; at most max_queued jobs wait or run at once.
 * 0 and *out, or -errno. Main thread. */
int admin_jobs_start(unsigned threads, unsigned max_queued,
                     struct admin_jobs **out);
/* Answer the jobs not started with 503, wait for the running ones (each
 * bounded by its own deadline), join and free. Call before
 * MHD_stop_daemon: every suspended connection is resumed by then. NULL is
 * a no-op. Main thread. */
void admin_jobs_stop(struct admin_jobs *js);
/* From the request handler: suspend c and queue fn(ctx, param) (param is
 * copied, at most 63 bytes). When the job is done c is resumed and MHD
 * calls the handler again: admin_job_take then gives the answer. 0 and
 * *out (owned by the caller once taken: admin_job_free), -EBUSY (max_queued
 * reached: answer 503) or -ESHUTDOWN. MHD thread. */
int admin_jobs_submit(struct admin_jobs *js, struct MHD_Connection *c,
                      admin_job_fn *fn, void *ctx, const char *param,
                      struct admin_job **out);
/* true and the answer (body moved to the caller) once j is done. MHD
 * thread. */
bool admin_job_take(struct admin_jobs *js, struct admin_job *j,
                    unsigned *status, json_t **body);
/* Free a taken job. NULL is a no-op. */
void admin_job_free(struct admin_job *j);

/* Stored chat messages (admin_msgs.c). t: the registrar's index
 * (reg_messages), NULL when there is none. The GET /api/messages body
 * {"available", "items": [{"ext", "count", "oldest_received_at",
 * "bytes"}] sorted by ext, "stats": {...}} (owned; never any text), and
 * the /metrics lines appended to b. Any thread. */
struct reg_msg_table;
struct buf;
json_t *admin_messages_json(struct reg_msg_table *t);
void admin_messages_metrics(struct buf *b, struct reg_msg_table *t);

/* The set-up time media relay added (admin_media.c), from fn (the
 * admin_sources' media_latency; NULL: none). The GET /api/media/latency
 * body {"available", "offer", "answer", "call": {"count", "sum_s",
 * "samples", "min_us", "p50_us", "p90_us", "p99_us", "max_us", "mean_us",
 * "buckets_le"}} (owned), and the pushpbx_media_setup_seconds histogram
 * appended to b (nothing without fn). Admin thread. */
json_t *admin_media_latency_json(admin_media_latency_fn *fn, void *arg);
void admin_media_metrics(struct buf *b, admin_media_latency_fn *fn,
                         void *arg);

#endif
