/*
 * registrar/pushdev: push devices (RFC 8599), the push registration of one
 * app installation: extension, provider (apns/fcm), device token
 * (pn-prid), provider parameter (pn-param: APNs "<team>.<bundle>[.voip]"
 * topic, FCM project id) and the +sip.instance when given.
 *
 * Why a table apart from the SIP bindings: a push device outlives its
 * binding. The app in background unregisters its contact (Expires: 0) and
 * from then on the push device is the only way to reach it, so it must
 * survive restarts without any loss window. Bindings are written behind
 * (store.h: up to 1 s lost on a crash); push devices are committed to
 * SQLite synchronously, before the 200 OK is built (pushdev_put returns
 * only after the COMMIT). In WAL mode with synchronous=NORMAL a commit is
 * a write() into the WAL, tens of microseconds, and it only happens when a
 * device is created or changed (or its last_seen is over an hour old), not
 * on every refresh.
 *
 * Matching (product.md, "what real clients send"): a REGISTER's device
 * replaces the stored device of the same extension with the same
 * +sip.instance (liblinphone sends a new token with a new Call-ID and
 * never unregisters the old one), else the one with the same provider and
 * pn-prid. Past max devices per extension the least recently seen one is
 * evicted (default max 1: the newest device wins).
 *
 * The store room has no synchronous write, so this file keeps its own
 * SQLite connection to the same database file (table push_devices). TODO
 * (store owner): move it behind a store_pushdev_put_sync() API.
 *
 * Thread: every function is thread-safe (one mutex) unless it says
 * otherwise. The table is small per extension (<= 16), so lookups walk a
 * hash chain of the extension.
 */
#ifndef PUSHPBX_REGISTRAR_PUSHDEV_H
#define PUSHPBX_REGISTRAR_PUSHDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PUSHDEV_EXT_MAX 32
#define PUSHDEV_PROVIDER_MAX 15
#define PUSHDEV_PRID_MAX 256
#define PUSHDEV_PARAM_MAX 128
#define PUSHDEV_INSTANCE_MAX 128
#define PUSHDEV_MAX_PER_EXT 16

/* A push device, by value (copies are cheap enough: a few per call). */
struct pushdev {
    char ext[PUSHDEV_EXT_MAX + 1];
    char provider[PUSHDEV_PROVIDER_MAX + 1]; /* "apns" | "fcm" */
    char prid[PUSHDEV_PRID_MAX + 1];         /* unescaped token */
    char param[PUSHDEV_PARAM_MAX + 1];       /* unescaped pn-param */
    char instance[PUSHDEV_INSTANCE_MAX + 1]; /* "" when none */
    int64_t created_at;                      /* unix s */
    int64_t last_seen;                       /* unix s, last REGISTER */
};

struct pushdev_table; /* opaque */

struct pushdev_opts {
    const char *db_path;    /* SQLite file; NULL = memory only (tests) */
    unsigned idle_expiry_s; /* devices not seen for this long expire;
                               0 = 30 days */
    /* Wall clock in ms; NULL = CLOCK_REALTIME. For tests. */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
};

/* Open the table: create the schema if needed and load every device not
 * idle-expired. Returns 0 and *out (owned; pushdev_close), or a negative
 * errno with "pushdev: PATH: reason" in err. Main thread. */
int pushdev_open(const struct pushdev_opts *o, struct pushdev_table **out,
                 char *err, size_t errlen);
/* NULL is a no-op. Devices stay in the database. */
void pushdev_close(struct pushdev_table *t);

/* Is value a plausible token/parameter for provider? Returns NULL when
 * fine, else the reason phrase for a 400 ("Bad pn-prid", "Missing
 * pn-param", ...). provider must be "apns" or "fcm" (else "Unknown
 * pn-provider"). Pure; any thread. */
const char *pushdev_check(const char *provider, const char *prid,
                          const char *param);

/* Does pn-param name an APNs VoIP topic (last label "voip")? */
bool pushdev_is_voip(const struct pushdev *d);

/* Create or refresh d (ext, provider, prid, param, instance are read;
 * times are set here) for its extension, replacing a device with the same
 * instance or the same provider+prid, and evicting the least recently
 * seen ones beyond max (1..PUSHDEV_MAX_PER_EXT). Committed to the
 * database before return. *created (may be NULL) tells whether a new
 * device appeared. Returns 0, -EINVAL (empty ext/provider/prid, too long)
 * or -EIO (commit failed: nothing changed in memory either, so the caller
 * can answer 500 and the phone retries). Any thread; blocks for the
 * commit. */
int pushdev_put(struct pushdev_table *t, const struct pushdev *d, unsigned max,
                bool *created);

/* Remove every device of ext (Contact: * with Expires: 0, or the admin).
 * Returns how many were removed, or -EIO. */
int pushdev_remove_ext(struct pushdev_table *t, const char *ext);

/* Remove the device(s) with this provider and token, in any extension
 * (the provider reported the token dead). Returns how many, or -EIO. */
int pushdev_remove_token(struct pushdev_table *t, const char *provider,
                         const char *prid);

/* Copy the devices of ext into out (up to cap), most recently seen first.
 * Returns the count (0 when none). */
size_t pushdev_find_ext(struct pushdev_table *t, const char *ext,
                        struct pushdev *out, size_t cap);

/* The device of ext that a REGISTER's contact belongs to: same provider
 * and prid, or (when instance is non-empty) same instance. Returns true
 * and a copy in *out. provider/prid NULL: by instance only; instance NULL
 * or "": by token only (wake looks a call's device up both ways: the token
 * it pushed, else the instance that replaced it with a new token). */
bool pushdev_match(struct pushdev_table *t, const char *ext,
                   const char *provider, const char *prid, const char *instance,
                   struct pushdev *out);

/* Drop devices idle for longer than idle_expiry_s (memory and database).
 * Returns how many. Call about once a minute. */
size_t pushdev_expire(struct pushdev_table *t);

/* Admin listing: cb once per device, under the table lock (cb must not
 * call back into the table). */
typedef void pushdev_list_cb(const struct pushdev *d, void *arg);
void pushdev_list(struct pushdev_table *t, pushdev_list_cb *cb, void *arg);

size_t pushdev_count(struct pushdev_table *t);

#endif
