/*
 * app/app_admin: starts the admin HTTP server (src/admin) for the daemon
 * and gives it what the other rooms know: the [admin] config, the
 * registrar, the SIP listeners (for the provisioning document), the push
 * settings of [apns]/[fcm], the push devices, recent pushes and wake-ups
 * of app_wake, the proxy's recent calls and call counters, the workers'
 * per-method SIP counters, the test push and the authenticated push check.
 *
 * The test push and the push check run a one-shot push client (src/push)
 * on a private loop on the calling thread: the daemon's own push client
 * lives on the wake thread and takes no requests from outside wake.
 */
#ifndef PUSHPBX_APP_APP_ADMIN_H
#define PUSHPBX_APP_APP_ADMIN_H

struct admin;
struct cfg;
struct reg;
struct store;
struct tp;
struct worker;
struct app_wake;
struct proxy_shared;
struct app_sip_cfg;

/* Observe the proxy (call counters for /metrics). Main thread, after
 * proxy_shared_new and before the workers start. sh may be NULL. Returns 0
 * or -ENOSPC (too many observers; counters then stay zero). */
int app_admin_attach(struct proxy_shared *sh);

/* The rtpengines (borrowed; outlive the admin) for GET /api/media and
 * /metrics. Main thread, before the admin starts. NULL: none. */
struct media_relays;
void app_admin_media(struct media_relays *relays);

/* The cluster (borrowed; outlives the admin) for GET /api/nodes. Main
 * thread, before the admin starts. NULL (single node): /api/nodes lists
 * this node alone. */
struct cluster;
void app_admin_cluster(struct cluster *cl);

/* A cluster_changed_fn (cluster.h; arg unused): another node changed ext
 * (NULL: anything, a resynchronisation); the admin's provisioning links
 * are read again (admin_prov_changed). Before the admin runs: nothing
 * (app_admin_start reads every link again once the admin is up, after
 * the admin's own load, so a change in between is not lost). The
 * store's listener thread or the main thread. */
void app_admin_cluster_changed(const char *ext, void *arg);

/* Install the [extension.N] sections of the configuration file into the
 * registrar after reg_load restored the store's extensions. The file wins
 * over the database: a database extension created through the API that
 * the file now defines is replaced (logged), and one that came from the
 * file but is no longer in it is removed (logged). File extensions are
 * marked STORE_EXT_CONFIG in the store and in the registrar
 * (reg_ext_mark_config), whose copy of the sources is what the file is
 * compared with (the extension table is not read again). Remembers st (may be
 * NULL) for app_admin_start: the admin's writes are committed through it.
 * Returns 0, or 1 after logging a bad section. Main thread, before the workers.
 */
int app_admin_load_extensions(const struct cfg *cfg, struct reg *reg,
                              struct store *st);

/* SIGHUP: apply the [extension.N] sections of a freshly loaded cfg as at
 * start (app_admin_load_extensions: new ones added, changed ones
 * updated, removed ones deleted, each logged) and tell the admin which
 * extensions the file now owns. cfg may be freed afterwards. Returns 0,
 * or 1 after logging a bad section. Main thread. */
int app_admin_reload(const struct cfg *cfg, struct reg *reg,
                     struct admin *admin);

/* Start the admin unless [admin] enabled = no (then *out = NULL). A
 * failure is logged and leaves *out NULL: the daemon runs without admin.
 * workers (borrowed, count of them) must outlive the admin: their SIP
 * counters are read from the admin thread. Returns 0. Main thread, after
 * worker 0 listens and after app_wake_open. */
int app_admin_start(const struct cfg *cfg, const struct app_sip_cfg *sip,
                    struct reg *reg, const struct tp *tp0,
                    struct worker *workers, unsigned count,
                    struct app_wake *wake, struct admin **out);

/* The health of the daemon's threads, for GET /healthz and the systemd
 * watchdog: every worker's loop, the push thread's loop and the store's
 * writer must answer within APP_HEALTH_BOUND_MS. Fills parts (borrowed
 * object) with {"workers"|"push"|"store": {"ok": bool, "detail": text}}
 * and returns 0 when all answered, -ETIMEDOUT otherwise. Blocks at most
 * the bound. Any thread but a worker's. */
#define APP_HEALTH_BOUND_MS 1000u

/* pushpbx --check-push: the authenticated step for every enabled provider
 * (APNs: a JWT- or certificate-authenticated push to an all-zero token,
 * where 400 BadDeviceToken means the credentials were accepted; FCM: an
 * OAuth access token, then a push to a dummy token). Prints a report and,
 * when a step fails, the firewall rules to stdout. Returns 0 when every
 * enabled provider passed, 8 when one failed (as pushpbxctl check), 2 when
 * no provider is enabled. Main thread, before the workers start. */
int app_check_push(const struct cfg *cfg);

#endif
