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
 * (store.h: up to 1 s lost on a crash); push devices are committed by the
 * store's writer thread before the REGISTER's 200 OK leaves. A SIP worker
 * never waits for that commit: pushdev_put_async queues the row, asks the
 * writer for the commit (store_commit_async) and returns PUSHDEV_PENDING;
 * the registrar answers "pending" and the worker parks the REGISTER's
 * server transaction until the callback reports the commit (app/core.c).
 * The admin API, on a thread that may wait, uses the blocking pushdev_put
 * (store_commit, bounded). Either way the commit only happens when a
 * device is created or changed (or its last_seen is over an hour old),
 * not on every refresh.
 *
 * Matching (product.md, "what real clients send"): a REGISTER's device
 * replaces the stored device of the same extension with the same
 * +sip.instance (liblinphone sends a new token with a new Call-ID and
 * never unregisters the old one), else the one with the same provider and
 * pn-prid. Past max devices per extension the least recently seen one is
 * evicted (default max 1: the newest device wins).
 *
 * The in-memory table is the one that answers (INVITEs look devices up
 * here, never in the database). Its mutex is held only for memory work
 * and for queueing the store writes, never across a wait for the disk:
 * while a put waits for its commit, pushdev_find_ext and pushdev_match on
 * other threads answer at once. The writes are queued under the mutex, so
 * the database sees them in the order memory changed.
 *
 * When a commit fails or times out, memory is ahead of the disk: the
 * device is marked unsynced, the caller answers 500 (a parked REGISTER:
 * when the callback reports the failure, or when the worker stops waiting
 * after PUSHDEV_COMMIT_TIMEOUT_MS), and the phone's next
 * REGISTER writes it again even if nothing changed (a device it replaced
 * may then reappear after a restart, until the phone's next REGISTER
 * replaces it again by instance or it idles out).
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
struct store;

/* How long a put or a removal that must be durable waits for the store's
 * commit by default (a blocking put; a parked REGISTER is answered 500
 * after as long). Longer than any commit the writer makes when the disk
 * is well; shorter than a SIP client's transaction timeout (32 s) by
 * far. */
#define PUSHDEV_COMMIT_TIMEOUT_MS 2000

struct pushdev_opts {
    struct store *store;    /* borrowed (outlives the table); NULL =
                               memory only (tests) */
    unsigned idle_expiry_s; /* devices not seen for this long expire;
                               0 = 30 days */
    unsigned commit_timeout_ms; /* 0 = PUSHDEV_COMMIT_TIMEOUT_MS */
    /* Wall clock in ms; NULL = CLOCK_REALTIME. For tests. */
    int64_t (*clock_ms)(void *arg);
    void *clock_arg;
};

/* Open the table: load from the store every device not idle-expired (the
 * expired ones are deleted). Returns 0 and *out (owned; pushdev_close), or
 * a negative errno with "pushdev: reason" in err. Main thread. */
int pushdev_open(const struct pushdev_opts *o, struct pushdev_table **out,
                 char *err, size_t errlen);
/* NULL is a no-op. Devices stay in the database; asynchronous commits
 * still running are waited for (their callbacks have run when this
 * returns) and removals still queued are committed first (store_sync),
 * so call it before store_close. */
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
 * seen ones beyond max (1..PUSHDEV_MAX_PER_EXT). Committed by the store
 * before return (store_commit, at most commit_timeout_ms; the table
 * mutex is not held meanwhile). *created (may be NULL) tells whether a
 * new device appeared. Returns 0; -EINVAL (empty ext/provider/prid, too
 * long); or the store's error when the commit did not succeed: -EIO
 * (rolled back), -ETIMEDOUT (the writer did not answer in time: the
 * outcome is unknown), -ENOSPC (store queue full), -ESHUTDOWN. Then the
 * device is in memory, marked unsynced (see above), and the caller
 * answers 500 so that the phone retries. Any thread that may block for
 * the commit (the admin's; never a SIP worker: pushdev_put_async). */
int pushdev_put(struct pushdev_table *t, const struct pushdev *d, unsigned max,
                bool *created);

/* The commit of a put or removal is running; its callback will report. */
#define PUSHDEV_PENDING 1

/* Result of an asynchronous put or removal: rc is 0 (on disk) or the
 * store's error (-EIO, -ENOSPC, -ESHUTDOWN; never -ETIMEDOUT: the caller
 * times its own wait). Runs on the store's writer thread, or on the
 * caller's thread before the call that started it returns (store.h,
 * store_commit_async); no pushdev lock is held. Must be short and
 * thread-safe: hand the result to the caller's loop. */
typedef void pushdev_done_cb(int rc, void *arg);

/* pushdev_put without waiting (for a SIP worker): memory changes and the
 * writes are queued as in pushdev_put, then returns 0 (nothing to commit:
 * a refresh, or a table without store; cb is not called), -EINVAL (cb not
 * called), or PUSHDEV_PENDING: cb(rc, arg) is called exactly once when
 * the commit is done, possibly before this returns. Until then the device
 * is in memory and marked unsynced (a failed commit leaves it so); the
 * caller acknowledges the REGISTER only once cb said 0. Any thread; does
 * not block. */
int pushdev_put_async(struct pushdev_table *t, const struct pushdev *d,
                      unsigned max, bool *created, pushdev_done_cb *cb,
                      void *arg);

/* Remove every device of ext (Contact: * with Expires: 0, or the admin)
 * and wait for the commit like pushdev_put (the sign-out or the admin's
 * "forget" is acknowledged only once durable). Returns how many were
 * removed from memory, or the store's error (memory is updated anyway; a
 * retry deletes again). Any thread that may block. */
int pushdev_remove_ext(struct pushdev_table *t, const char *ext);

/* pushdev_remove_ext without waiting (a REGISTER with Contact: *): returns
 * 0 (no store; cb not called) or PUSHDEV_PENDING and cb reports the
 * commit like pushdev_put_async's. Any thread; does not block. */
int pushdev_remove_ext_async(struct pushdev_table *t, const char *ext,
                             pushdev_done_cb *cb, void *arg);

/* Remove the device(s) with this provider and token, in any extension
 * (the provider reported the token dead). The delete is queued, not
 * waited for: this runs on the push thread, which must not block, and a
 * dead token that comes back after a crash is reported dead again.
 * Returns how many (0 or 1), or -ENOSPC (store queue full; memory is
 * updated anyway). Any thread; does not block. */
int pushdev_remove_token(struct pushdev_table *t, const char *provider,
                         const char *prid);

/* pushdev_remove_token, then wait for the commit like pushdev_put: for
 * the admin's "forget this device", acknowledged only once durable.
 * Returns 0 or 1, or the store's error. Any thread; blocks. */
int pushdev_forget_token(struct pushdev_table *t, const char *provider,
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

/* Drop devices idle for longer than idle_expiry_s (memory at once; the
 * deletes are queued, not waited for: a device that comes back after a
 * crash expires again at load). Returns how many. Call about once a
 * minute. */
size_t pushdev_expire(struct pushdev_table *t);

/* Admin listing: cb once per device, under the table lock (cb must not
 * call back into the table). */
typedef void pushdev_list_cb(const struct pushdev *d, void *arg);
void pushdev_list(struct pushdev_table *t, pushdev_list_cb *cb, void *arg);

size_t pushdev_count(struct pushdev_table *t);

/* [cluster] Replace the devices of ext in memory by rows (borrowed; as
 * another node committed them; not written back). A device whose own
 * commit is still running here is kept. Returns the devices now known
 * from rows. Any thread. */
struct store_pushdev;
int pushdev_replace_ext(struct pushdev_table *t, const char *ext,
                        const struct store_pushdev *rows, size_t n);

#endif
