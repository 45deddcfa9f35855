/*
 * admin: the administration HTTP server inside the daemon: JSON API
 * (extensions, registrations, provisioning, push views), the web page
 * (embedded at build time, no files at run time), provisioning links with
 * QR codes, and Prometheus metrics on /metrics.
 *
 * libmicrohttpd runs its own single thread (the admin thread) for every
 * route, except the test push and the push check, which run on two admin
 * job threads while their connection waits (docs/admin.md,
 * "Availability"). From there the admin reaches daemon state only through
 * thread-safe registrar calls (reg_list, reg_lookup, reg_ext_set,
 * reg_ext_del, reg_get_stats) and the optional provider callbacks of
 * struct admin_sources. It never touches a worker's libuv loop: a
 * provider that needs a worker must hop with tp_post or uv_async_send
 * itself and may block the calling thread while it waits (bounded: the
 * admin thread serves one request at a time).
 *
 * Every request except GET of the page assets and /prov/<token> needs
 * "Authorization: Bearer <token>" (constant-time compare); a bad or
 * missing token is 401. Errors are JSON {"error": reason, "field": name}.
 *
 * Extension changes (create, update, password, delete, a provisioning link
 * that sets a password) are answered only once the store has committed
 * them: a 2xx is on disk. Extensions of the configuration file are read
 * only here (409).
 *
 * Provisioning links (/prov/<32 hex>) live in the store's database (the
 * admin indexes them in memory); they expire, serve a limited number of
 * documents and die with a password reset; see docs/admin.md.
 */
#ifndef PUSHPBX_ADMIN_ADMIN_H
#define PUSHPBX_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/cfg.h"

struct reg;
struct store;
struct admin;

/* [admin] section (option table in admin_cfg.c). */
struct admin_cfg {
    bool enabled;
    char *listen;      /* "127.0.0.1:8080"; port 0 picks one */
    char *token;       /* "" = generate at start */
    char *token_file;  /* where a generated token is written (0600) */
    char *prov_db;     /* deprecated: old links file, imported once */
    char *public_url;  /* base of provisioning links; "" = http://listen */
    char *sip_host;    /* host phones use; "" = [sip] domain */
    unsigned max_body; /* request body cap in bytes */
    unsigned prov_link_ttl_s;        /* lifetime of a new link */
    unsigned prov_link_max_fetches;  /* documents one link serves */
    unsigned max_connections;        /* open connections, all sources */
    unsigned max_connections_per_ip; /* per source address; 0 = no cap */
    unsigned request_timeout_s;      /* a request must arrive within */
};
extern const struct cfg_section admin_cfg_section;

/* Lists the admin asks its providers for. Each callback appends JSON
 * objects to items (a borrowed array) and returns 0 or -errno. They run on
 * the admin thread or a job thread, possibly at the same time, and must be
 * thread-safe. A NULL callback means "this
 * room is not there yet": the API answers {"available": false, "items":
 * []} and the page shows "not available yet".
 *
 * Item fields the page shows (others are passed through):
 *   calls:   call_id, from, to, state, started_at, ended_at, result
 *            (outcome and final status, e.g. "answered 200")
 *   pushes:  at, ext, provider, type, token_prefix, status, http_status,
 *            reason, latency_ms
 *   wakeups: ext, call_id, from, since, expires_at, devices
 *   devices: ext, id, provider, token (full; the admin shows only its
 *            first 8 characters), param, instance, created_at,
 *            last_seen_at */
typedef int admin_list_fn(void *arg, json_t *items);

/* The push devices of one extension (the "devices" objects above), for a
 * page of GET /api/registrations: O(devices of ext), where list_devices
 * walks every device. Returns 0, or < 0 when the list is not available. */
typedef int admin_ext_list_fn(void *arg, const char *ext, json_t *items);
/* Send a test push to the push devices of ext. Fill result (borrowed
 * object) with what happened; 0, -ENOENT (no device) or -errno. Runs on
 * an admin job thread, never the admin thread, and may take a bounded time
 * (a real exchange with the provider). */
typedef int admin_push_test_fn(void *arg, const char *ext, json_t *result);
/* Delete push device id of ext (id NULL = all of ext's devices). 0 or
 * -ENOENT. */
typedef int admin_device_del_fn(void *arg, const char *ext, const char *id);
/* The authenticated push check (POST /api/push/check): one object per
 * enabled provider appended to items, {provider, url, step, ok,
 * http_status, reason, detail}. Runs on an admin job thread, never the
 * admin thread, and may take a bounded time (a real HTTP/2 exchange with
 * the provider). 0 or -errno. */
typedef int admin_push_check_fn(void *arg, json_t *items);

#define ADMIN_LATENCY_BUCKETS 8
/* Bucket upper bounds of pushpbx_push_latency_seconds. */
extern const double admin_latency_bounds_s[ADMIN_LATENCY_BUCKETS];

#define ADMIN_WAKE_BUCKETS 14
/* Bucket upper bounds of the pushpbx_wake_*_seconds histograms (50 µs to
 * 1 s). */
extern const double admin_wake_bounds_s[ADMIN_WAKE_BUCKETS];

/* One wake-path interval: histogram (cumulative, "le") over every sample
 * since start, and exact figures over the last samples kept (only when
 * asked for: nearest-rank percentiles, µs). */
struct admin_wake_lat {
    uint64_t bucket[ADMIN_WAKE_BUCKETS];
    uint64_t count;
    double sum_s;
    uint64_t samples;
    uint64_t min_us, p50_us, p90_us, p99_us, p999_us, max_us;
    double mean_us;
};

#define ADMIN_MEDIA_RELAYS 16

enum admin_sip_method {
    ADMIN_M_INVITE,
    ADMIN_M_ACK,
    ADMIN_M_BYE,
    ADMIN_M_CANCEL,
    ADMIN_M_REGISTER,
    ADMIN_M_OPTIONS,
    ADMIN_M_OTHER,
    ADMIN_M_COUNT,
};

/* Counters of rooms other than the registrar, for /metrics. Fields a room
 * does not provide stay zero (documented in docs/admin.md). Index
 * [provider] is 0 = apns, 1 = fcm. */
#define ADMIN_MAX_WORKERS 64

struct admin_counters {
    uint64_t push_devices;
    uint64_t calls_total;    /* calls the proxy routed (started) */
    uint64_t calls_answered; /* of those, answered (2xx) */
    uint64_t calls_active;
    uint64_t calls_open; /* calls whose state is still held */
    uint64_t pending_wakeups;
    uint64_t pushes_sent[2];
    uint64_t pushes_failed[2];
    uint64_t pushes_dead[2];
    /* cumulative counts per bucket (Prometheus "le" semantics) */
    uint64_t push_latency_bucket[ADMIN_LATENCY_BUCKETS];
    uint64_t push_latency_count;
    double push_latency_sum_s;
    uint64_t sip_messages[ADMIN_M_COUNT];
    /* Media relay (docs/media.md): each configured rtpengine's state, and
     * the proxy's media counters (proxy_media_count). */
    size_t media_relay_count;
    struct admin_media_relay {
        char addr[64];
        bool up;
        uint64_t requests, timeouts, errors;
    } media_relay[ADMIN_MEDIA_RELAYS];
    uint64_t media_calls, media_one_way, media_no_media;
    uint64_t media_failed, media_passed, media_rejected;
    /* per worker (the first workers of them): requests handled, and UDP
     * requests read and handed to another worker by Call-ID */
    unsigned workers;
    uint64_t worker_requests[ADMIN_MAX_WORKERS];
    uint64_t worker_udp_steered[ADMIN_MAX_WORKERS];
};

typedef void admin_counters_fn(void *arg, struct admin_counters *out);

/* Wake-path latency ([wake], bench/wake-bench.sh): out[0] INVITE read to
 * its push request written, out[1] woken device's REGISTER read to its
 * INVITE sent. exact: also compute the exact percentiles over the kept
 * samples (GET /api/wake/latency; costs a sort); /metrics passes false. */
typedef void admin_wake_latency_fn(void *arg, bool exact,
                                   struct admin_wake_lat out[2]);

/* The time media relay added to call set-up (docs/media.md "Set-up
 * time"), one interval: the histogram's upper bounds and cumulative counts
 * (Prometheus "le"), count and sum since start, and with exact the
 * percentiles over the recent samples kept. */
#define ADMIN_MEDIA_BUCKETS 16
enum admin_media_interval {
    ADMIN_MEDIA_OFFER,
    ADMIN_MEDIA_ANSWER,
    ADMIN_MEDIA_CALL,
    ADMIN_MEDIA_INTERVALS
};
struct admin_media_lat {
    double bound_s[ADMIN_MEDIA_BUCKETS];
    uint64_t le[ADMIN_MEDIA_BUCKETS];
    uint64_t count;
    double sum_s;
    uint64_t samples;
    uint64_t min_us, p50_us, p90_us, p99_us, max_us;
    double mean_us;
};
/* Fill out[ADMIN_MEDIA_OFFER..CALL]. exact as for admin_wake_latency_fn
 * (GET /api/media/latency passes true, /metrics false). */
typedef void
admin_media_latency_fn(void *arg, bool exact,
                       struct admin_media_lat out[ADMIN_MEDIA_INTERVALS]);

/* GET /healthz: fill parts (borrowed object) with one {"ok", "detail"}
 * object per part of the daemon and return 0 when every part answered,
 * nonzero otherwise. Bounded in time (about a second at most); runs on
 * the admin thread. */
typedef int admin_health_fn(void *arg, json_t *parts);

/* Push settings phones learn from the provisioning document. NULL or ""
 * fields mean "not configured". */
struct admin_push_info {
    const char *fcm_project_id;
    const char *fcm_sender_id;
    const char *apns_environment; /* "production" or "sandbox" */
    const char *apns_topic;
};

struct admin_sources {
    void *arg;
    admin_list_fn *list_calls;
    admin_list_fn *list_pushes;
    admin_list_fn *list_wakeups;
    admin_list_fn *list_devices;
    admin_list_fn *list_media; /* GET /api/media: the rtpengines' state */
    /* GET /api/nodes (admin_nodes.c): name, advertise, self, alive,
     * started_at, last_seen, bindings, calls (null when unknown) */
    admin_list_fn *list_nodes;
    /* NULL: pages filter list_devices (O(every device) a page). */
    admin_ext_list_fn *list_ext_devices;
    admin_push_test_fn *push_test;
    admin_device_del_fn *device_del;
    admin_push_check_fn *push_check;
    admin_counters_fn *counters;
    admin_wake_latency_fn *wake_latency;
    admin_media_latency_fn *media_latency; /* NULL: no media relay */
    admin_health_fn *health;
};

/* An extension of the configuration file ([extension.N]). The file is its
 * source: the API, pushpbxctl and the page cannot change or delete it
 * (409 naming file and line), and its provisioning link hands out the
 * file's password instead of setting a new one. */
struct admin_conf_ext {
    const char *number;
    const char *file;     /* the config file; "--set" for a --set one */
    unsigned line;        /* line of the [extension.N] header; 0 = --set */
    const char *password; /* the file's password (for provisioning) */
};

/* A SIP listener, for the provisioning document. */
struct admin_sip_listener {
    const char *transport; /* "udp", "tcp", "tls" */
    unsigned port;
};

struct admin_opts {
    const struct admin_cfg *cfg; /* borrowed; must outlive the admin */
    struct reg *reg;             /* borrowed; thread-safe */
    /* borrowed; must outlive the admin. Extension changes are committed
     * through it (store_commit) before they are answered. NULL: no
     * persistence (the answer does not wait). */
    struct store *store;
    /* The store's database file, for GET /api/backup (copied); NULL or ""
     * = no backups. */
    const char *db_path;
    /* The store is PostgreSQL ([store] backend): GET /api/backup answers
     * 501 "the database is PostgreSQL: back it up with pg_dump". */
    bool db_postgresql;
    /* This node's [cluster] node (copied); NULL or "" = a single node.
     * The registrations list names the node holding each binding. */
    const char *node;
    const struct admin_conf_ext *conf_exts; /* copied */
    size_t conf_ext_count;
    const char *domain; /* [sip] domain (copied) */
    const char *realm;           /* [sip] realm (copied) */
    const struct admin_sip_listener *listeners; /* copied */
    size_t listener_count;
    struct admin_push_info push;  /* copied */
    struct admin_sources sources; /* copied; callbacks may be NULL */
};

/* Open the provisioning database, settle the token (generate, print once
 * to stderr and write token_file when [admin] token is empty) and start
 * the HTTP thread. Returns 0 and *out (owned; admin_stop), or -errno with
 * "admin: reason" in err. Main thread. */
int admin_start(const struct admin_opts *o, struct admin **out, char *err,
                size_t errlen);
/* Replace the list of the configuration file's extensions (SIGHUP
 * reload): copied; from then on the API treats exactly these as
 * read-only. Any thread. a NULL: nothing. */
void admin_conf_reload(struct admin *a, const struct admin_conf_ext *exts,
                       size_t count);
/* Another node of a cluster changed what the store holds (the change
 * feed, docs/cluster.md): ext's provisioning link may have been made,
 * used or revoked there, so read it again; ext NULL: read every link
 * again (a resynchronisation). Memory only (nothing is written). Any
 * thread that may block for a read (the store's listener); a NULL: no-op.
 * Must not run concurrently with admin_stop. */
void admin_prov_changed(struct admin *a, const char *ext);
/* Port actually bound (useful with listen port 0). */
unsigned admin_port(const struct admin *a);
/* Stop the HTTP thread (waits for the request in progress and for running
 * test pushes and checks, each bounded by its deadline), close the
 * database and free. NULL is a no-op. Main thread. */
void admin_stop(struct admin *a);

/* ---- pure helpers, exposed for unit tests -------------------------- */

/* Fill out with 2*nbytes lower-case hex of random bytes (OpenSSL
 * RAND_bytes) and a NUL. out must hold 2*nbytes+1. 0 or -EIO. */
int admin_random_hex(char *out, size_t nbytes);
/* Constant-time "Bearer <token>" check of an Authorization value. */
bool admin_bearer_ok(const char *header, const char *token);
/* Extension number rule of the registrar: 1..32 of [A-Za-z0-9_.+-]. */
bool admin_number_ok(const char *number);
/* Copy uri into out with the value of pn-prid cut to its first 8
 * characters and "..." (the admin never shows whole device tokens). */
void admin_redact_uri(const char *uri, char *out, size_t outlen);
/* QR code of text as an SVG document / an 8-bit grayscale PNG. Return an
 * owned buffer (free) and its length, or NULL if text cannot be encoded. */
char *admin_qr_svg(const char *text, size_t *len);
unsigned char *admin_qr_png(const char *text, unsigned scale, size_t *len);

#endif
