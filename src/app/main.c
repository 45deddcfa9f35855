/*
 * app/main: the pushpbx daemon. Loads the configuration, opens the
 * listeners on every worker, reports where it listens (log lines and the
 * --ready-file JSON that tests and scripts read), then waits on its own
 * loop for SIGINT/SIGTERM and shuts down cleanly: ringing calls are
 * answered 503 and their branches CANCELled first (bounded by [sip]
 * shutdown_ms, see on_signal), then every worker closes its handles,
 * every thread is joined, the store is flushed, everything is freed (the
 * sanitizer build's leak check passes), exit code 0.
 *
 * Exit codes: 0 clean stop or valid --check-config, 1 run-time failure
 * (cannot bind, cannot start a thread), 2 bad usage or bad configuration
 * (or --check-push with no provider enabled), 8 --check-push failed.
 */
#include <pthread.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <uv.h>

#include "admin/admin.h"
#include "app/app_admin.h"
#include "app/app_cfg.h"
#include "app/app_journal.h"
#include "app/app_wake.h"
#include "app/worker.h"
#include "base/log.h"
#include "base/xmalloc.h"
#include "cluster/cluster.h"
#include "cluster/cluster_cfg.h"
#include "config/cfg.h"
#include "media/client.h"
#include "media/media_cfg.h"
#include "proxy/proxy.h"
#include "proxy/proxy_cfg.h"
#include "registrar/reg.h"
#include "registrar/reg_cfg.h"
#include "store/store.h"
#include "store/store_backup.h"
#include "store/store_cfg.h"

#define EXIT_CONFIG 2

struct daemon {
    const struct cfg *cfg;
    const struct app_sip_cfg *sip;
    struct worker *workers;
    unsigned worker_count;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sighup;
    struct tp_tls *tls;     /* [tls] context; NULL without tls: listeners */
    struct tp_group *group; /* UDP spreading ([sip] udp_spread) and
                               connection balancing; NULL: 1 worker */
    /* What a SIGHUP reload loads again (reload_config). */
    const char *config_path, *state_dir;
    const char *const *sets;
    size_t nsets;
    uv_timer_t drain;       /* graceful stop: polls the workers */
    uint64_t drain_start_ms, drain_end_ms; /* uv_now of d->loop */
    bool draining, stopping;
    struct store *store; /* SQLite writer thread */
    struct reg *reg;     /* shared by every worker's core */
    uv_thread_t loader;  /* runs reg_load (registrar_open) */
    bool loading;        /* loader started, not joined yet */
    int load_rc;         /* reg_load's result, once joined */
    uv_timer_t expire;   /* reg_expire_some() once a second */
    uv_timer_t watchdog; /* systemd WATCHDOG=1 pings (Type=notify) */
    bool watchdog_on;
    uint64_t wd_sent[TP_MAX_WORKERS], wd_push; /* last tick's pings */
    struct proxy_shared *proxy; /* calls: shared part of the proxy */
    struct admin *admin;   /* admin HTTP server (own thread); may be NULL */
    struct app_wake *wake; /* push devices, push thread, wake-ups */
    struct media_relays *relays; /* [media] rtpengines; shared by workers */
    struct cluster *cluster; /* [cluster]; NULL for a single node */
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: pushpbx --config FILE [--set section.key=value]...\n"
               "               [--check-config | --check-push] "
               "[--ready-file PATH]\n"
               "               [--state-dir DIR] [--restore FILE]\n"
               "       pushpbx --help-config | --help-config-md | --help | "
               "--version\n"
               "\n"
               "  --config FILE       INI configuration (see --help-config)\n"
               "  --set S.K=V         override one option (repeatable)\n"
               "  --check-config      load and validate, then exit (0 = ok)\n"
               "  --check-push        authenticate to APNs/FCM with the "
               "configured\n"
               "                      credentials, then exit (0 ok, 8 "
               "failed)\n"
               "  --ready-file PATH   once listening, write {\"pid\":..,"
               "\"listen\":[..]} there\n"
               "  --state-dir DIR     relative paths in the configuration are "
               "relative\n"
               "                      to DIR (default $STATE_DIRECTORY, else "
               "the\n"
               "                      working directory)\n"
               "  --restore FILE      replace the database ([store] path) with "
               "the\n"
               "                      backup FILE (pushpbxctl backup), then "
               "exit;\n"
               "                      the daemon must be stopped\n"
               "  --version           print the version\n"
               "  --help-config       print every option with its default\n"
               "  --help-config-md    the same as Markdown "
               "(docs/configuration.md)\n");
}

/* Write the ready file atomically (tmp + rename): a reader never sees a
 * partial file. Hosts are numeric addresses, so no JSON escaping needed. */
static int
write_ready_file(const char *path, const struct tp *tp, unsigned admin_port)
{
    struct tp_listen_spec spec;
    char tmp[4096], host[TP_ADDRSTRLEN];
    FILE *f;
    int n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    f = fopen(tmp, "we");
    if (!f)
        return -errno;
    fprintf(f, "{\"pid\":%ld,\"listen\":[", (long)getpid());
    for (size_t i = 0; i < tp_listener_count(tp); i++) {
        if (tp_listener(tp, i, &spec) < 0)
            continue;
        fprintf(f, "%s{\"transport\":\"%s\",\"host\":\"%s\",\"port\":%u}",
                i ? "," : "", tp_proto_name(spec.proto),
                tp_addr_host(&spec.addr, host, sizeof(host)),
                (unsigned)tp_addr_port(&spec.addr));
    }
    fprintf(f, "]");
    if (admin_port)
        fprintf(f, ",\"admin_port\":%u", admin_port);
    fprintf(f, "}\n");
    if (fflush(f) != 0 || ferror(f)) {
        int rc = -errno;
        fclose(f);
        unlink(tmp);
        return rc ? rc : -EIO;
    }
    fclose(f);
    if (rename(tmp, path) < 0) {
        int rc = -errno;
        unlink(tmp);
        return rc;
    }
    return 0;
}

/* Retry-After of the 503s a stopping daemon answers calls with: about
 * what a restart takes; a phone with another server may go there. */
#define SHUTDOWN_RETRY_AFTER_S 5

static void
close_handles(struct daemon *d)
{
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    uv_close((uv_handle_t *)&d->expire, NULL);
    uv_close((uv_handle_t *)&d->drain, NULL);
    if (d->watchdog_on) /* pinged until the very end of the drain */
        uv_close((uv_handle_t *)&d->watchdog, NULL);
    d->watchdog_on = false;
}

/* Stop every worker (each answers what is still open first, worker_stop)
 * and let the main loop end. */
static void
stop_now(struct daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    for (unsigned i = 0; i < d->worker_count; i++)
        worker_stop(&d->workers[i]);
    close_handles(d);
}

/* While draining: stop once every worker is idle and the missed-call
 * pushes the ended calls produced have completed, or at the deadline.
 * Polled (10 ms): a few seconds at most, once per process life. */
static void
on_drain_tick(uv_timer_t *h)
{
    struct daemon *d = h->data;
    uint64_t now = uv_now(&d->loop);
    bool idle = app_wake_idle(d->wake);

    for (unsigned i = 0; i < d->worker_count && idle; i++)
        idle = worker_idle(&d->workers[i]);
    if (!idle && now < d->drain_end_ms)
        return;
    log_notice("app", "%s after %llu ms", idle ? "drained" : "drain cut short",
               (unsigned long long)(now - d->drain_start_ms));
    stop_now(d);
}

/* SIGTERM/SIGINT: graceful stop (RFC 3261 callers are not left without
 * a final response): every worker answers its ringing calls 503 with
 * Retry-After, CANCELs their branches and refuses new calls; the daemon
 * exits once that is done or after [sip] shutdown_ms. A second signal,
 * or shutdown_ms = 0, stops at once (the answers still go out: worker
 * on_stop runs proxy_drain). The store is flushed after the workers
 * (registrar_close). */
static void
on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";

    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    if (d->draining || d->sip->shutdown_ms == 0) {
        log_notice("app", "%s received, stopping now", name);
        stop_now(d);
        return;
    }
    log_notice("app", "%s received, stopping: ending calls (at most %u ms)",
               name, d->sip->shutdown_ms);
    d->draining = true;
    for (unsigned i = 0; i < d->worker_count; i++)
        worker_drain(&d->workers[i], SHUTDOWN_RETRY_AFTER_S);
    uv_update_time(&d->loop);
    d->drain_start_ms = uv_now(&d->loop);
    d->drain_end_ms = d->drain_start_ms + d->sip->shutdown_ms;
    uv_timer_start(&d->drain, on_drain_tick, 10, 10);
}

/* SIGHUP (systemctl reload): load the configuration file again and apply
 * what can change while running: the [extension.N] sections (added,
 * changed, removed; as at start) and [log] level. A file that does not
 * load changes nothing. The TLS certificate and key are read again too
 * (renewed by ACME; a bad file is logged and the old one stays).
 * Everything else (listeners, workers, store, admin, push credentials,
 * timers) needs a restart: docs/install.md. */
static void
on_hup(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    size_t nsections;
    const struct cfg_section *const *sections = app_cfg_sections(&nsections);
    struct cfg *nc;
    char err[1024];

    (void)signum;
    if (d->draining || d->stopping)
        return;
    sd_notify(0, "RELOADING=1\nSTATUS=reloading");
    if (cfg_load_in(d->state_dir, sections, nsections, d->config_path,
                    d->sets, d->nsets, &nc, err, sizeof(err)) < 0) {
        log_error("app", "reload: %s: nothing changed", err);
        sd_notify(0, "READY=1\nSTATUS=reload failed, running as before");
        return;
    }
    const struct app_log_cfg *lc = cfg_get(nc, &app_log_section);
    log_level = (enum log_level)lc->level;
    int rc = app_admin_reload(nc, d->reg, d->admin);
    if (d->tls) {
        if (tp_tls_reload(d->tls, err, sizeof(err)) < 0)
            log_error("app", "reload: TLS certificate not reloaded, keeping "
                             "the old one: %s", err);
        else
            log_notice("app", "reload: TLS certificate reloaded (generation "
                              "%u)", tp_tls_generation(d->tls));
    }
    log_notice("app",
               "reloaded %s: %zu extension%s from the file%s, log level %s "
               "(other settings need a restart)",
               d->config_path, cfg_instance_count(nc, &reg_ext_cfg_section),
               cfg_instance_count(nc, &reg_ext_cfg_section) == 1 ? "" : "s",
               rc ? " (one was refused, see above)" : "",
               log_level_name(log_level));
    cfg_free(nc);
    sd_notify(0, "READY=1\nSTATUS=reloaded");
}

/* systemd's watchdog (WatchdogSec=): pinged from the main loop at half
 * the interval, and only while every worker's loop and the push thread
 * answered the previous tick's ping: a hung worker stops the pings and
 * systemd restarts the service. */
static void
on_watchdog(uv_timer_t *h)
{
    struct daemon *d = h->data;
    bool ok = app_wake_answered(d->wake, d->wd_push);

    for (unsigned i = 0; i < d->worker_count && ok; i++)
        ok = worker_answered(&d->workers[i], d->wd_sent[i]);
    if (ok)
        sd_notify(0, "WATCHDOG=1");
    else
        log_warn("app", "watchdog: a worker or the push thread did not "
                        "answer; not pinging systemd");
    for (unsigned i = 0; i < d->worker_count; i++)
        d->wd_sent[i] = worker_ping(&d->workers[i]);
    d->wd_push = app_wake_ping(d->wake);
}

static void
watchdog_start(struct daemon *d)
{
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    uint64_t ms = usec / 2000; /* ping at half the interval */
    uv_timer_init(&d->loop, &d->watchdog);
    d->watchdog.data = d;
    uv_timer_start(&d->watchdog, on_watchdog, ms ? ms : 1, ms ? ms : 1);
    d->watchdog_on = true;
}

static void
on_expire(uv_timer_t *h)
{
    struct daemon *d = h->data;
    size_t n = reg_expire_some(d->reg, REG_EXPIRE_SHARDS_PER_TICK);

    if (n)
        log_debug("app", "expired bindings=%zu", n);
    app_wake_tick(d->wake);
    cluster_tick(d->cluster); /* NULL (single node): nothing */
}

static void
load_thread(void *arg)
{
    struct daemon *d = arg;

    (void)pthread_setname_np(pthread_self(), "pbx-load");

    d->load_rc = reg_load(d->reg);
}

/* Open the store and start restoring the registrar from it on a thread of
 * its own: the push devices (app_wake_open) load meanwhile on the main
 * thread, from their own table on their own connection (store.h), and at
 * a million phones each load takes seconds. Nothing reads the registrar's
 * tables until registrar_ready. Returns 0, or 1 after logging why. */
static int
registrar_open(struct daemon *d)
{
    const struct store_cfg *sc = cfg_get(d->cfg, &store_cfg_section);
    const struct reg_cfg *rc = cfg_get(d->cfg, &reg_cfg_section);
    const struct cluster_cfg *cc = cfg_get(d->cfg, &cluster_cfg_section);
    char err[512];

    enum store_backend be = STORE_BACKEND_SQLITE;
    (void)store_backend_parse(sc->backend, &be); /* checked when loaded */
    if (cc->node[0] && be != STORE_BACKEND_POSTGRESQL) {
        log_error("app", "[cluster] node = %s needs [store] backend = "
                         "postgresql (the nodes share its database), not %s",
                  cc->node, sc->backend && sc->backend[0] ? sc->backend
                                                          : "sqlite");
        return 1;
    }
    struct store_cfg scn = *sc;
    scn.node = cc->node; /* "" = single node */
    if (store_open(&scn, &d->store, err, sizeof(err)) < 0) {
        log_error("app", "%s", err);
        return 1;
    }
    struct reg_opts o = {.cfg = rc, .domain = d->sip->domain,
                         .realm = d->sip->realm, .store = d->store,
                         .node = cc->node,
                         .messages = cfg_get(d->cfg, &reg_msg_cfg_section)};
    if (reg_new(&o, &d->reg) < 0) {
        log_error("app", "registrar: bad domain or realm");
        return 1;
    }
    int e = uv_thread_create(&d->loader, load_thread, d);
    if (e < 0) {
        log_error("app", "registrar: cannot start the loader: %s",
                  uv_strerror(e));
        return 1;
    }
    d->loading = true;
    return 0;
}

/* Wait for the registrar's restore (a no-op when none runs), then import
 * the configured extensions (passwords become HA1 values). Returns 0, or
 * 1 after logging why. Called on every path once registrar_open
 * succeeded, before anything reads the registrar or it is freed. */
static int
registrar_ready(struct daemon *d)
{
    if (!d->loading)
        return d->reg ? 0 : 1;
    uv_thread_join(&d->loader);
    d->loading = false;
    if (d->load_rc < 0) {
        log_error(
            "app", "registrar: cannot restore from %s",
            ((const struct store_cfg *)cfg_get(d->cfg, &store_cfg_section))
                ->path);
        return 1;
    }
    /* The file's extensions over the database's (app_admin.c). */
    return app_admin_load_extensions(d->cfg, d->reg, d->store);
}

/* New remote bindings (another node's REGISTER): a call ringing here for
 * that extension gets its branch, as after a local REGISTER. */
static void
on_remote_bindings(const char *ext, void *arg)
{
    struct daemon *d = arg;
    proxy_binding_added(d->proxy, slice_cstr(ext));
}

static void
on_node_down(const char *name, const struct sockaddr_storage *addr, void *arg)
{
    struct daemon *d = arg;
    (void)name;
    proxy_node_down(d->proxy, addr);
}

/* [cluster] node set: join the cluster (heartbeat, other nodes' bindings
 * and push devices, the change listener) and let the proxy trust the
 * nodes. Before the workers. Returns 0, or 1 after logging why. */
static int
cluster_start(struct daemon *d)
{
    const struct cluster_cfg *cc = cfg_get(d->cfg, &cluster_cfg_section);
    char err[512];

    if (!cc->node[0])
        return 0; /* single node: the cluster room stays out of the way */
    struct cluster_opts o = {.cfg = cc,
                             .store = d->store,
                             .reg = d->reg,
                             .devices = app_wake_devices(d->wake),
                             .bindings_added = on_remote_bindings,
                             .node_down = on_node_down,
                             .changed = app_admin_cluster_changed,
                             .arg = d};
    if (cluster_open(&o, &d->cluster, err, sizeof(err)) < 0) {
        log_error("app", "%s", err);
        return 1;
    }
    proxy_shared_set_cluster(d->proxy, cluster_is_peer, cluster_peer_advertise,
                             d->cluster);
    app_admin_cluster(d->cluster);
    return 0;
}

static void
registrar_close(struct daemon *d)
{
    reg_free(d->reg);
    store_close(d->store); /* commits what is queued */
    d->reg = NULL;
    d->store = NULL;
}

/* What `make run` shows: how to point a softphone at us. */
static void
print_softphone_help(const struct daemon *d, const struct tp *tp0)
{
    struct tp_listen_spec s;
    char host[TP_ADDRSTRLEN];
    size_t n = cfg_instance_count(d->cfg, &reg_ext_cfg_section);

    if (n == 0)
        return;
    printf("\nRegister a softphone (SIP account):\n");
    for (size_t j = 0; j < tp_listener_count(tp0); j++)
        if (tp_listener(tp0, j, &s) == 0)
            printf("  server    %s port %u (%s)\n",
                   tp_addr_host(&s.addr, host, sizeof(host)),
                   (unsigned)tp_addr_port(&s.addr), tp_proto_name(s.proto));
    printf("  domain    %s (use the server's IP address if the phone "
           "cannot resolve it)\n",
           d->sip->domain);
    /* A handful (the demo accounts); a big list belongs to the admin
     * API, not the terminal. Never the passwords: stdout of a service
     * ends up in the journal. The README and the configuration file say
     * what the demo passwords are. */
    for (size_t i = 0; i < n && i < 10; i++) {
        const char *number;
        const struct reg_ext_cfg *e =
            cfg_instance(d->cfg, &reg_ext_cfg_section, i, &number);
        printf("  user %-5s %s\n", number, e->name);
    }
    if (n > 10)
        printf("  ... and %zu more extensions in the configuration\n",
               n - 10);
    printf("  password  as set in the configuration file "
           "([extension.NUMBER] password)\n\n");
    fflush(stdout);
}

/* Parse the configured listen items (validated at load). */
static int
listen_specs(const struct app_sip_cfg *sip, struct tp_listen_spec *specs,
             size_t *count)
{
    size_t n = 0, got;

    for (size_t i = 0; i < sip->listen.count && n < TP_MAX_LISTENERS; i++) {
        if (tp_listen_spec_parse(sip->listen.items[i], &specs[n],
                                 TP_MAX_LISTENERS - n, &got, NULL, 0) < 0)
            return -EINVAL;
        n += got;
    }
    *count = n;
    return 0;
}

static int
run_daemon(struct daemon *d, const char *ready_file)
{
    struct tp_listen_spec specs[TP_MAX_LISTENERS];
    char err[512], text[TP_ADDRSTRLEN + 8];
    size_t nspecs = 0;
    unsigned started = 0;
    struct tp *tp0;
    int rc, status = 0;

    d->worker_count = d->sip->workers;
    if (d->worker_count == 0)
        d->worker_count = uv_available_parallelism();
    if (d->worker_count == 0)
        d->worker_count = 1;
    if (d->worker_count > TP_MAX_WORKERS)
        d->worker_count = TP_MAX_WORKERS;
    if (listen_specs(d->sip, specs, &nspecs) < 0)
        return 1; /* cannot happen: checked when loading */
    for (size_t j = 0; j < nspecs && !d->tls; j++)
        if (specs[j].proto == TP_TLS &&
            tp_tls_new(cfg_get(d->cfg, &tp_tls_cfg_section), &d->tls, err,
                       sizeof(err)) < 0) {
            log_error("app", "%s", err);
            return 1;
        }
    d->workers = xcalloc(d->worker_count, sizeof(*d->workers));
    bool spread = d->sip->udp_spread == APP_SPREAD_YES ||
                  (d->sip->udp_spread == APP_SPREAD_AUTO &&
                   uv_available_parallelism() >= APP_SPREAD_AUTO_MIN_CPUS);
    /* The group exists with more than one worker (TCP/TLS connections are
     * balanced over it); UDP spreading is its own switch. */
    if (d->worker_count > 1 && tp_group_new(d->worker_count, &d->group) == 0)
        tp_group_set_udp_spread(d->group, spread);
    log_info("app", "%u workers, UDP spreading %s", d->worker_count,
             d->group && spread ? "on" : "off");

    /* Worker 0 binds the configured addresses (port 0 picks a port); the
     * others bind worker 0's real addresses with SO_REUSEPORT. */
    for (unsigned i = 0; i < d->worker_count; i++) {
        if (i == 1) {
            for (size_t j = 0; j < nspecs; j++)
                tp_listener(d->workers[0].tp, j, &specs[j]);
        }
        rc = worker_init(&d->workers[i], i, d->sip, d->tls, d->group, specs,
                         nspecs, err, sizeof(err));
        if (rc < 0) {
            log_error("app", "worker %u: %s", i, err);
            d->worker_count = i;
            status = 1;
            goto stop;
        }
        d->workers[i].core.reg = d->reg;
        if (d->proxy &&
            proxy_new(d->proxy, d->workers[i].tp, d->workers[i].tt,
                      &d->workers[i].core.proxy) < 0) {
            log_error("app", "worker %u: proxy set-up failed", i);
            d->worker_count = i + 1;
            status = 1;
            goto stop;
        }
        d->workers[i].wake = d->wake;
        app_wake_worker(d->wake, i, d->workers[i].tp);
    }
    for (; started < d->worker_count; started++) {
        rc = worker_start(&d->workers[started]);
        if (rc < 0) {
            log_error("app", "cannot start worker thread: %s", uv_strerror(rc));
            status = 1;
            goto stop;
        }
    }

    /* Signals first: whoever reads the ready file may signal at once. */
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sighup);
    d->sigint.data = d->sigterm.data = d->sighup.data = d;
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sighup, on_hup, SIGHUP);
    uv_timer_init(&d->loop, &d->expire);
    d->expire.data = d;
    uv_timer_init(&d->loop, &d->drain);
    d->drain.data = d;
    uv_timer_start(&d->expire, on_expire, 1000, 1000);

    tp0 = d->workers[0].tp;
    for (size_t j = 0; j < tp_listener_count(tp0); j++) {
        struct tp_listen_spec s;
        if (tp_listener(tp0, j, &s) == 0)
            log_notice("app", "listening %s",
                       tp_listen_spec_format(&s, text, sizeof(text)));
    }
    log_notice("app", "pushpbx %s running: %u worker%s, domain %s",
               PUSHPBX_VERSION, d->worker_count,
               d->worker_count == 1 ? "" : "s", d->sip->domain);
    print_softphone_help(d, tp0);
    if (app_admin_start(d->cfg, d->sip, d->reg, tp0, d->workers,
                        d->worker_count, d->wake, &d->admin) < 0) {
        status = 1;
        close_handles(d);
        goto stop;
    }
    if (ready_file) {
        rc = write_ready_file(ready_file, tp0,
                              d->admin ? admin_port(d->admin) : 0);
        if (rc < 0) {
            log_error("app", "cannot write ready file %s: %s", ready_file,
                      strerror(-rc));
            status = 1;
            close_handles(d);
            goto stop;
        }
    }

    /* Type=notify: systemd considers us started once we listen. */
    sd_notifyf(0, "READY=1\nSTATUS=listening, %u worker%s\nMAINPID=%lu",
               d->worker_count, d->worker_count == 1 ? "" : "s",
               (unsigned long)getpid());
    watchdog_start(d);

    uv_run(&d->loop, UV_RUN_DEFAULT);
    goto join;

stop:
    for (unsigned i = 0; i < d->worker_count; i++)
        worker_stop(&d->workers[i]);
join:
    /* No more notes to workers about to go, nor calls into the admin
     * (provisioning links): before admin_stop. */
    cluster_stop(d->cluster);
    admin_stop(d->admin); /* its thread reads the registrar: stop first */
    d->admin = NULL;
    /* Workers not started run their loop to the end in worker_fini. */
    for (unsigned i = 0; i < d->worker_count; i++)
        worker_fini(&d->workers[i]);
    free(d->workers);
    d->workers = NULL;
    tp_group_free(d->group); /* every member tp is gone */
    d->group = NULL;
    tp_tls_free(d->tls); /* every connection (and SSL) is gone */
    d->tls = NULL;
    if (status == 0)
        log_notice("app", "stopped");
    return status;
}

int
main(int argc, char **argv)
{
    enum {
        OPT_CHECK = 256,
        OPT_CHECK_PUSH,
        OPT_HELP_CONFIG,
        OPT_HELP_CONFIG_MD,
        OPT_READY,
        OPT_STATE_DIR,
        OPT_RESTORE,
        OPT_VERSION
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 's'},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"check-push", no_argument, NULL, OPT_CHECK_PUSH},
        {"help-config", no_argument, NULL, OPT_HELP_CONFIG},
        {"help-config-md", no_argument, NULL, OPT_HELP_CONFIG_MD},
        {"ready-file", required_argument, NULL, OPT_READY},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"restore", required_argument, NULL, OPT_RESTORE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *ready_file = NULL;
    /* Relative paths in the configuration resolve here: --state-dir, else
     * systemd's StateDirectory= ($STATE_DIRECTORY; the first of a list),
     * else the working directory. */
    const char *state_dir = getenv("STATE_DIRECTORY");
    const char *restore = NULL;
    const char **sets = xcalloc((size_t)argc + 1, sizeof(char *));
    size_t nsets = 0, nsections;
    bool check = false, check_push = false;
    struct cfg *cfg = NULL;
    char err[1024];
    int opt, status;
    const struct cfg_section *const *sections = app_cfg_sections(&nsections);

    while ((opt = getopt_long(argc, argv, "c:s:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 's':
            sets[nsets++] = optarg;
            break;
        case OPT_CHECK:
            check = true;
            break;
        case OPT_CHECK_PUSH:
            check_push = true;
            break;
        case OPT_READY:
            ready_file = optarg;
            break;
        case OPT_STATE_DIR:
            state_dir = optarg;
            break;
        case OPT_RESTORE:
            restore = optarg;
            break;
        case OPT_HELP_CONFIG:
        case OPT_HELP_CONFIG_MD:
            cfg_print_help(stdout, sections, nsections,
                           opt == OPT_HELP_CONFIG_MD);
            free(sets);
            return 0;
        case 'h':
            usage(stdout);
            free(sets);
            return 0;
        case OPT_VERSION:
            printf("pushpbx %s\n", PUSHPBX_VERSION);
            free(sets);
            return 0;
        default:
            usage(stderr);
            free(sets);
            return EXIT_CONFIG;
        }
    }
    if (optind < argc || !config) {
        fprintf(stderr, "pushpbx: %s\n",
                optind < argc ? "unexpected argument" : "--config is required");
        usage(stderr);
        free(sets);
        return EXIT_CONFIG;
    }

    char state_buf[4096] = "";
    if (state_dir) {
        /* $STATE_DIRECTORY may list several folders, colon-separated. */
        size_t n = strcspn(state_dir, ":");
        if (n >= sizeof(state_buf))
            n = sizeof(state_buf) - 1;
        memcpy(state_buf, state_dir, n);
        state_buf[n] = '\0';
    }
    if (cfg_load_in(state_buf, sections, nsections, config, sets, nsets, &cfg,
                    err, sizeof(err)) < 0) {
        fprintf(stderr, "pushpbx: %s\n", err);
        free(sets);
        return EXIT_CONFIG;
    }
    if (cluster_advertise_tls(cfg_get(cfg, &cluster_cfg_section))) {
        /* Other nodes connect to our tls: listener, and our own TLS
         * connections to them need its [tls] certificate. */
        struct tp_listen_spec specs[TP_MAX_LISTENERS];
        size_t nspecs = 0, j = 0;
        if (listen_specs(cfg_get(cfg, &app_sip_section), specs, &nspecs) == 0)
            while (j < nspecs && specs[j].proto != TP_TLS)
                j++;
        if (j == nspecs) {
            fprintf(stderr,
                    "pushpbx: %s: [cluster] advertise asks for TLS: "
                    "[sip] listen needs a tls: item\n",
                    config);
            cfg_free(cfg);
            free(sets);
            return EXIT_CONFIG;
        }
    }
    if (check) {
        /* A tls: listener's files are part of the configuration: a
         * missing, mismatched or expired certificate fails the check (the
         * unit's ExecStartPre runs it). */
        const struct app_sip_cfg *sc = cfg_get(cfg, &app_sip_section);
        struct tp_listen_spec specs[TP_MAX_LISTENERS];
        size_t nspecs = 0;
        status = 0;
        if (listen_specs(sc, specs, &nspecs) == 0)
            for (size_t j = 0; j < nspecs && status == 0; j++)
                if (specs[j].proto == TP_TLS)
                    status = tp_tls_check(cfg_get(cfg, &tp_tls_cfg_section),
                                          err, sizeof(err));
        if (status < 0)
            fprintf(stderr, "pushpbx: %s: [tls] %s\n", config, err);
        else
            printf("%s: OK\n", config);
        cfg_free(cfg);
        free(sets);
        return status < 0 ? EXIT_CONFIG : 0;
    }
    if (restore) {
        /* Offline: the daemon must be stopped (the store's instance lock
         * tells). Exit 0 restored, 1 refused or failed. */
        const struct store_cfg *sc = cfg_get(cfg, &store_cfg_section);
        enum store_backend be = STORE_BACKEND_SQLITE;
        if (store_backend_parse(sc->backend, &be) < 0) {
            snprintf(err, sizeof(err), "[store] backend: unknown \"%s\"",
                     sc->backend);
            status = -EINVAL;
        } else if (be == STORE_BACKEND_POSTGRESQL) {
            /* The backup is a SQLite file; PostgreSQL has its own tools. */
            snprintf(err, sizeof(err),
                     "the database is PostgreSQL: restore it with pg_restore"
                     " or psql (backups are made with pg_dump)");
            status = -ENOTSUP;
        } else {
            status = store_restore(sc->path, restore, err, sizeof(err));
        }
        if (status == 0)
            printf("pushpbx: %s restored from %s\n", sc->path, restore);
        else
            fprintf(stderr, "pushpbx: %s\n", err);
        cfg_free(cfg);
        free(sets);
        return status == 0 ? 0 : 1;
    }

    const struct app_log_cfg *lc = cfg_get(cfg, &app_log_section);
    log_level = (enum log_level)lc->level;
    app_journal_setup(lc->journal);
    signal(SIGPIPE, SIG_IGN);
    if (check_push) {
        /* The push client needs a loop: run it here, before any worker
         * exists. Exit 0 ok, 8 a step failed, 2 no provider enabled. */
        status = app_check_push(cfg);
        cfg_free(cfg);
        free(sets);
        return status;
    }

    struct daemon d = {.cfg = cfg,
                       .sip = cfg_get(cfg, &app_sip_section),
                       .config_path = config,
                       .state_dir = state_buf,
                       .sets = sets,
                       .nsets = nsets};
    uv_loop_init(&d.loop);
    status = registrar_open(&d);
    if (status == 0 &&
        proxy_shared_new(cfg_get(cfg, &proxy_cfg_section), d.reg,
                         d.sip->domain, &d.proxy) < 0) {
        log_error("app", "proxy: bad configuration");
        status = 1;
    }
    if (status == 0) {
        /* [media]: one ng client per worker (proxy_new), one relay set */
        const struct media_cfg *mc = cfg_get(cfg, &media_cfg_section);
        if (media_relays_new(mc, &d.relays, err, sizeof(err)) < 0) {
            log_error("app", "media: %s", err);
            status = 1;
        } else {
            proxy_shared_set_media(d.proxy, d.relays, mc->relay,
                                   mc->on_failure, mc->ice, mc->srtp);
            app_admin_media(d.relays);
        }
    }
    if (status == 0)
        status = app_wake_open(cfg, d.reg, d.store, d.proxy, &d.wake);
    if (d.loading) { /* joined on every path: registrar_close frees it */
        int lrc = registrar_ready(&d);
        if (status == 0)
            status = lrc;
    }
    if (status == 0)
        status = cluster_start(&d);
    if (status == 0)
        app_admin_attach(d.proxy); /* call counters; before the workers */
    if (status == 0)
        status = run_daemon(&d, ready_file);
    cluster_stop(d.cluster);    /* (again: a start that failed early) */
    app_wake_close(d.wake);     /* after the workers: joins the push thread */
    proxy_shared_free(d.proxy); /* after every worker has stopped */
    media_relays_free(d.relays);
    registrar_close(&d);
    cluster_close(d.cluster); /* after store_close: its listener is gone */
    /* Run close callbacks of the signal handles, then free the loop. */
    uv_run(&d.loop, UV_RUN_DEFAULT);
    uv_loop_close(&d.loop);
    cfg_free(cfg);
    free(sets);
    return status;
}
