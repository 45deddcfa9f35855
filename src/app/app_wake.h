/*
 * app/app_wake: wiring of the wake room (src/wake) into the daemon: opens
 * the push-device table (same SQLite file as the store), tells the
 * registrar which providers it serves, starts wake's push thread
 * (wake_push_start) and attaches wake to the proxy, gives it each worker's
 * transport, and offers the admin its push devices and recent pushes. No
 * policy here: wake calls the proxy itself.
 */
#ifndef PUSHPBX_APP_APP_WAKE_H
#define PUSHPBX_APP_APP_WAKE_H

#include <stdbool.h>
#include <stdint.h>

struct admin_push_info;
struct admin_wake_lat;
struct admin_sources;
struct app_wake;
struct cfg;
struct proxy_shared;
struct reg;
struct store;
struct tp;

/* Main thread, after the registrar and the proxy's shared part exist and
 * before workers start. Push devices are always kept; pushes are sent
 * only for the providers [apns]/[fcm] enable; st (borrowed, closed after
 * app_wake_close) keeps them. Returns 0 and *out, or 1
 * after logging why (bad key file, unreadable database). */
int app_wake_open(const struct cfg *cfg, struct reg *reg, struct store *st,
                  struct proxy_shared *sh, struct app_wake **out);
/* Worker idx's transport (timer queue, clock, flows). Before it starts. */
void app_wake_worker(struct app_wake *aw, unsigned idx, struct tp *tp);
/* On worker idx as it stops, before its transport goes: its own push
 * client is closed (in-flight pushes cancelled; later ones go to the push
 * thread). NULL aw is a no-op. */
void app_wake_worker_stop(struct app_wake *aw, unsigned idx);
/* About once a second (main loop): idle push devices expire (checked once
 * a minute). */
void app_wake_tick(struct app_wake *aw);
/* After every worker has stopped. NULL is a no-op. */
void app_wake_close(struct app_wake *aw);
/* The push-device table (borrowed; lives until app_wake_close), for the
 * cluster's change handler. NULL aw: NULL. */
struct pushdev_table *app_wake_devices(struct app_wake *aw);
/* No push in flight: every push handed to the push thread has completed
 * (a stopping daemon waits for its missed-call pushes). NULL: true. Any
 * thread. */
bool app_wake_idle(struct app_wake *aw);
/* Health: ask the push thread's loop to answer (returns the request's
 * number; 0 when push is off) and whether it has. Any thread. */
uint64_t app_wake_ping(struct app_wake *aw);
bool app_wake_answered(struct app_wake *aw, uint64_t n);
/* Fill the admin's push sources and provisioning push info from the
 * opened instance (no-op before app_wake_open). Main thread. */
void app_wake_admin(struct admin_sources *src, struct admin_push_info *push);
/* The two wake-path intervals ([0] INVITE_TO_PUSH, [1]
 * REGISTER_TO_INVITE): histograms, and with exact the percentiles over
 * the kept samples (a sort: for GET /api/wake/latency, not /metrics);
 * out has 2 entries.
 * Zeros before app_wake_open. Any thread (the admin's). */
void app_wake_latency(bool exact, struct admin_wake_lat *out);

#endif
