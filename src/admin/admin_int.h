/*
 * admin/admin_int: declarations shared inside the admin room: the
 * server's state and its reply helpers (admin.c), the route families (one
 * file each, as below), the provisioning-link table (admin_prov.c), the
 * embedded web assets (generated admin_www.c), and the request guard and
 * job threads that keep the server answering (admin_avail.c).
 */
#ifndef PUSHPBX_ADMIN_ADMIN_INT_H
#define PUSHPBX_ADMIN_ADMIN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include <jansson.h>
#include <microhttpd.h>

#include "admin/admin.h"
#include "base/buf.h"
#include "store/store.h"

/* Provisioning links: one row per extension, kept by the store (table
 * prov_links of the store's database) and indexed in memory here. A row
 * holds the 128-bit link token (32 hex) and the password the link hands
 * out: the registrar keeps only HA1 values, so (re)generating a link also
 * sets a new password. Thread: the admin thread (and admin_start/
 * admin_stop); in a cluster also the store's listener thread
 * (admin_prov_refresh, admin_prov_reload): every call takes the table's
 * mutex. */
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
/* Count one document served by the link row->token of row->ext, in the
 * store (store_prov_count_fetch: one UPDATE, committed before return, so
 * the limit holds across a crash and across the nodes of a cluster) and
 * in the index. 0: counted; -EACCES: not counted, the link no longer
 * serves at now_s (expired or used up, maybe through another node); in
 * both row's fetches, max_fetches and expires_at are the stored ones.
 * -ENOENT: no such link (revoked or renewed, maybe through another node:
 * dropped from the index); -EIO: not counted (store failure, logged). */
int admin_prov_count_fetch(struct admin_prov *p, struct admin_prov_row *row,
                           int64_t now_s);
/* Another node wrote ext's link (a cluster's change feed): read the row
 * again (store_prov_read) and put it in the index, or drop ext's link
 * when there is none. 0, or the read's error (logged; index unchanged).
 * Blocks for the read. No store (tests): 0. */
int admin_prov_refresh(struct admin_prov *p, const char *ext);
/* Read every link again and replace the index with them (a cluster's
 * resynchronisation: links made and revoked while no notification could
 * say so); *count (may be NULL) gets how many. 0, or the read's error
 * (logged; index unchanged). Blocks for the read. */
int admin_prov_reload(struct admin_prov *p, size_t *count);

/* Embedded files of src/admin/www (generated at build time). */
struct admin_asset {
    const char *path; /* "/index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
};
extern const struct admin_asset admin_assets[];
extern const size_t admin_asset_count;

/* ---- availability (admin_avail.c) -------------------------------------- */

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

/* GET /api/nodes (admin_nodes.c): {"available", "cluster", "items"} from
 * the list_nodes source (NULL: unavailable). The body is owned by the
 * caller. Admin thread. */
json_t *admin_nodes_json(int (*fn)(void *arg, json_t *items), void *arg);
void admin_messages_metrics(struct buf *b, struct reg_msg_table *t);

/* ---- the server (admin.c) ---------------------------------------------- */

struct admin_conf_set; /* the configuration file's extensions (admin_ext.c) */

/* The server (admin.c). Fields are set by admin_start and read by the
 * route families; what changes while it runs is noted. */
struct admin {
    const struct admin_cfg *cfg;
    struct reg *reg;
    char *domain, *realm;
    char *db_path; /* GET /api/backup; may be "" */
    bool db_postgresql; /* GET /api/backup: 501, use pg_dump */
    char *node;         /* [cluster] node; "" = single node */
    struct admin_sip_listener *listeners;
    size_t listener_count;
    struct {
        char *fcm_project_id, *fcm_sender_id, *apns_environment, *apns_topic;
    } push;
    struct admin_sources src;
    struct store *store;
    /* The configuration file's extensions: replaced on a reload
     * (admin_conf_reload); a replaced set stays until admin_stop, since a
     * request may still hold an entry of it. */
    pthread_mutex_t conf_mu;
    struct admin_conf_set *confs;
    struct admin_prov *prov;
    char token[129];
    char base_url[256];
    unsigned port;
    struct MHD_Daemon *mhd;
    struct admin_guard *guard; /* request_timeout_s reaper */
    struct admin_jobs *jobs;   /* test pushes and checks */
    /* MHD's log lines, repeats folded (on_mhd_log) */
    pthread_mutex_t log_mu;
    char log_last[512];
    uint64_t log_at_ms, log_repeats;
    /* admin thread only */
    uint64_t requests, unauthorized;
};

/* Per-request state: the body, capped at cfg->max_body. */
struct admin_req {
    struct buf body;
    bool too_big;
    bool answered;         /* a response is queued already (early 413) */
    struct admin_job *job; /* a slow route running on a job thread */
};

/* An extension as the routes show it (admin_ext.c); display owned. */
struct admin_ext_info {
    char number[33];
    char *display;
    bool enabled;
    size_t bindings;
};

/* Replies. Each queues the response on c and returns MHD's result.
 * admin_send_json steals j; admin_send_raw's data follows mode. A 401
 * carries WWW-Authenticate. Admin thread. */
enum MHD_Result admin_send_raw(struct MHD_Connection *c, unsigned status,
                               const char *type, void *data, size_t len,
                               enum MHD_ResponseMemoryMode mode);
enum MHD_Result admin_send_json(struct MHD_Connection *c, unsigned status,
                                json_t *j);
/* {"error": reason, "status": status[, "field": field]} (owned). */
json_t *admin_error_json(unsigned status, const char *reason,
                         const char *field);
enum MHD_Result admin_send_error(struct MHD_Connection *c, unsigned status,
                                 const char *reason, const char *field);
enum MHD_Result admin_send_empty(struct MHD_Connection *c, unsigned status);
/* Wall-clock unix seconds. */
int64_t admin_now_s(void);
/* method is m (exact). */
bool admin_is_method(const char *method, const char *m);
/* {"available": bool, "items": [...]} from an optional provider (owned);
 * redact: devices' tokens cut to token_prefix. */
json_t *admin_provider_list(struct admin *a, admin_list_fn *fn, bool redact);

/* ---- extensions (admin_ext.c) ------------------------------------------ */

/* The extension number (one hash lookup): true and *out (out->display
 * owned by the caller), or false. Admin thread. */
bool admin_ext_find(struct admin *a, const char *number,
                    struct admin_ext_info *out);
/* The [extension.N] of the configuration file, or NULL. Valid until
 * admin_stop (a reload keeps the replaced set). Any thread. */
const struct admin_conf_ext *admin_conf_find(struct admin *a,
                                             const char *number);
/* The extension's push-device limit (1 if unknown), kept when its
 * credentials change. */
unsigned admin_ext_max_push(struct admin *a, const char *number);
/* Delete ext's provisioning link (its password changed). True if there
 * was one. */
bool admin_ext_revoke_link(struct admin *a, const char *ext);
/* A new SIP password: 20 hex (80 bits). 0, -EINVAL (outlen too small) or
 * -EIO (no randomness). */
int admin_gen_password(char *out, size_t outlen);
/* Durability of an extension change: take a mark before the registrar
 * writes, then wait with admin_commit_writes until the store has
 * committed everything queued since (0, or the store_commit error,
 * logged with what and ext); only then is the change acknowledged.
 * admin_send_not_saved answers 500 for a change that is in memory but not
 * on disk, saying so and what state is left (state). Admin thread. */
struct store_mark admin_write_mark(struct admin *a);
int admin_commit_writes(struct admin *a, struct store_mark m, const char *what,
                        const char *ext);
enum MHD_Result admin_send_not_saved(struct MHD_Connection *c, int rc,
                                     const char *state);
/* /api/extensions: list (GET) or create (POST). Admin thread. */
enum MHD_Result admin_route_extensions(struct admin *a,
                                       struct MHD_Connection *c,
                                       const char *method,
                                       struct admin_req *rq);
/* /api/extensions/N[/...] (seg, n: the URL's segments, n >= 3): the
 * extension's own routes, and those of its registrations, push devices
 * and provisioning link (their files). Admin thread. */
enum MHD_Result admin_route_ext(struct admin *a, struct MHD_Connection *c,
                                const char *method, struct admin_req *rq,
                                char **seg, size_t n);
/* Replace the configuration file's extensions (admin_conf_reload, at
 * start) with a copy of exts; admin_conf_sets_free frees every set made
 * (admin_stop). */
struct admin_conf_set *admin_conf_set_new(const struct admin_conf_ext *exts,
                                          size_t count);
void admin_conf_sets_free(struct admin_conf_set *cs);

/* ---- provisioning (admin_prov.c, routes) ------------------------------- */

/* /api/extensions/N/prov[/qr.svg|/qr.png] for e (seg, n: the URL's
 * segments). Admin thread. */
enum MHD_Result admin_route_ext_prov(struct admin *a, struct MHD_Connection *c,
                                     const char *method,
                                     const struct admin_ext_info *e, char **seg,
                                     size_t n);
/* GET /prov/<token> (no API token: the link's token is the credential):
 * the provisioning document, counted against the link's fetch limit;
 * 404 unknown, 410 expired or used up. Admin thread. */
enum MHD_Result admin_route_prov(struct admin *a, struct MHD_Connection *c,
                                 const char *token);

/* ---- registrations (admin_reg.c) --------------------------------------- */

/* GET /api/extensions/N/registrations: {"push_available", "items": [one
 * row]} (owned), or NULL for an unknown extension. Admin thread. */
json_t *admin_reg_one(struct admin *a, const char *number);
/* GET /api/registrations[?limit=N][&after=EXT]: one page. Admin thread. */
enum MHD_Result admin_route_registrations(struct admin *a,
                                          struct MHD_Connection *c);

/* ---- pushes (admin_push.c) --------------------------------------------- */

/* Replace d's full "token" by "token_prefix" (its first 8 characters). */
void admin_push_redact(json_t *d);
/* Add to each item of items (registration rows {number, bindings, push})
 * its push devices, redacted, each with its state against the item's
 * bindings. Admin thread. */
void admin_push_add(struct admin *a, json_t *items);
/* POST /api/extensions/N/push/test for ext: queued on a job thread (the
 * answer goes out when it is done), 501 without a provider, 503 when the
 * jobs are full. Admin thread. */
enum MHD_Result admin_push_test_start(struct admin *a, struct MHD_Connection *c,
                                      struct admin_req *rq, const char *ext);
/* DELETE /api/extensions/N/push[?id=ID] for ext. Admin thread. */
enum MHD_Result admin_push_device_del(struct admin *a, struct MHD_Connection *c,
                                      const char *ext);
/* /api/push/check (POST only), on a job thread as the test push. */
enum MHD_Result admin_route_push_check(struct admin *a,
                                       struct MHD_Connection *c,
                                       const char *method,
                                       struct admin_req *rq);

/* ---- metrics (admin_metrics.c) ----------------------------------------- */

/* GET /metrics: every counter in Prometheus text. Admin thread. */
enum MHD_Result admin_route_metrics(struct admin *a, struct MHD_Connection *c);
/* GET /api/wake/latency: {"available"[, "invite_to_push",
 * "register_to_invite"]}. Admin thread. */
enum MHD_Result admin_route_wake_latency(struct admin *a,
                                         struct MHD_Connection *c);

/* ---- backup (admin_backup.c), status (admin_status.c) ------------------ */

/* GET /api/backup: the database as a download. Admin thread. */
enum MHD_Result admin_route_backup(struct admin *a, struct MHD_Connection *c);
/* The answer (501) to /api/backup on the postgresql backend, any method:
 * the store's online backup is SQLite's; PostgreSQL has its own tools. */
#define ADMIN_BACKUP_PG_ERROR                                                  \
    "the database is PostgreSQL: back it up with pg_dump"
/* GET /healthz (no token): 200 or 503 with the failing parts. */
enum MHD_Result admin_route_healthz(struct admin *a, struct MHD_Connection *c);
/* GET /api/status. */
enum MHD_Result admin_route_status(struct admin *a, struct MHD_Connection *c);

/* ---- media (admin_media.c) --------------------------------------------- */

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
