/*
 * media/client: the ng client a worker uses to drive rtpengine.
 *
 * Two objects:
 *  - struct media_relays: the configured rtpengines and their state (up or
 *    down, last error, counters), made once from [media] and shared by all
 *    workers. Its status may be read from any thread (/metrics, the admin
 *    page); a relay one worker marks down is avoided by all.
 *  - struct media_client: one per worker loop. One UDP socket per address
 *    family, one uv_timer and our own timer queue (base/tq) for every
 *    pending request: no libuv handle per request, no blocking call.
 *
 * A request gets a cookie unique to this process run (random prefix, the
 * worker's index, a counter) and is sent again with the same cookie every
 * timeout_ms, retries times, so a slow rtpengine answers the repeat from
 * its cookie cache instead of running the command twice. Then the relay is
 * marked down and the next one is tried. Which relay: the caller passes
 * the one that took the call's offer (sticky: no failover, the other
 * relays do not know the call) or -1, and then the first relay is chosen
 * from a hash of the call-id (calls spread evenly, and every worker picks
 * the same relay for the same call); relays marked down are skipped while
 * another is up. A down relay is pinged every probe_ms and marked up again
 * on its first answer. A request fails at the latest after
 * relays * (retries + 1) * timeout_ms from its first send.
 *
 * At most [media] window requests per client are in flight to one relay
 * (0: no limit); the others wait, unsent, in that relay's queue in the
 * order they were made and are sent as answers come back (the queue's
 * wait is not part of timeout_ms). A queued request whose relay is marked
 * down meanwhile goes to another relay that is up, or fails (NO_RELAY);
 * a sticky one is still sent there.
 *
 * Anything that is not the answer to a pending request (garbage, a late
 * repeat, a stranger's datagram) is counted and dropped.
 */
#ifndef PUSHPBX_MEDIA_CLIENT_H
#define PUSHPBX_MEDIA_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "media/media_cfg.h"
#include "media/ng.h"

#define MEDIA_MAX_RELAYS 16

struct media_relays;
struct media_client;

/* Make the relay set from a loaded [media] section (borrowed: the values
 * are copied). Returns 0 and *out (owned; media_relays_free), or -EINVAL
 * with err ("'rtpengine': ...") for a bad address or more than
 * MEDIA_MAX_RELAYS. An empty list is allowed (count 0: nothing to send
 * to). Main thread, before the workers start. */
int media_relays_new(const struct media_cfg *cfg, struct media_relays **out,
                     char *err, size_t errlen);
/* Free after every client using it is closed. NULL does nothing. */
void media_relays_free(struct media_relays *r);
size_t media_relays_count(const struct media_relays *r);

/* One relay's state. Counters are since start, summed over workers. */
struct media_relay_status {
    char addr[64];      /* as configured */
    bool up;            /* false after a request timed out on it */
    uint64_t requests;  /* requests sent to it (not counting repeats) */
    uint64_t answers;   /* answers received (ok or error) */
    uint64_t errors;    /* answers with result "error" */
    uint64_t timeouts;  /* requests that got no answer from it */
    uint64_t garbage;   /* datagrams from it that were not an answer */
    char last_error[128]; /* "" when none yet */
};
/* Copy relay i's state (i < media_relays_count). Any thread. */
void media_relays_status(const struct media_relays *r, size_t i,
                         struct media_relay_status *out);

enum media_ng_status {
    MEDIA_NG_OK,       /* rtpengine answered "ok"/"pong" */
    MEDIA_NG_REFUSED,  /* rtpengine answered "error" (see error_reason) */
    MEDIA_NG_TIMEOUT,  /* no relay answered within the retries */
    MEDIA_NG_NO_RELAY, /* none configured, or every relay is down */
};
const char *media_ng_status_name(enum media_ng_status s);

/* What the callback gets. answer is NULL unless an answer arrived (OK,
 * REFUSED); its slices live only during the callback. relay is the index
 * of the relay that answered (keep it for the call's later requests), or
 * the last one tried (-1 when none was). */
struct media_ng_result {
    enum media_ng_status status;
    int relay;
    unsigned tries;       /* datagrams sent, repeats and failovers included */
    uint64_t elapsed_us;  /* send to callback */
    const char *error;    /* static text when status != OK */
    const struct media_ng_answer *answer;
};

/* Called once per request on the client's loop thread, unless the request
 * was cancelled or the client closed first. res is borrowed for the call.
 * The callback may send, cancel and close. */
typedef void media_ng_cb(void *arg, const struct media_ng_result *res);

/* Open a client on loop (its thread only from then on). worker names it in
 * cookies (any small number unique per client in the process). Returns 0
 * and *out, or a libuv error (socket). */
int media_client_new(uv_loop_t *loop, struct media_relays *relays,
                     unsigned worker, struct media_client **out);

/* Send req (borrowed: encoded before return) to relay (an index from an
 * earlier result: sticky, no failover) or -1 (chosen as above). On 0, cb
 * will be called exactly once unless cancelled; *id (may be NULL) names
 * the request for media_client_cancel. Returns -EINVAL (bad request, why
 * logged at debug), -EMSGSIZE (over 64 KiB encoded), -ENOENT (relay out of
 * range), -ESHUTDOWN (client closing); cb is then not called. When no
 * relay can be tried the callback still runs (MEDIA_NG_NO_RELAY), from the
 * loop, never from inside this call. Loop thread. */
int media_client_send(struct media_client *c, const struct media_ng_req *req,
                      int relay, media_ng_cb *cb, void *arg, uint64_t *id);

/* Forget request id: no callback, its answer will be dropped. Unknown or
 * finished ids are ignored. Loop thread. */
void media_client_cancel(struct media_client *c, uint64_t id);

/* Requests waiting for an answer. */
size_t media_client_pending(const struct media_client *c);

/* Drop every pending request (no callbacks) and close the handles; the
 * client is freed once the loop has run the close callbacks. NULL does
 * nothing. Loop thread. */
void media_client_close(struct media_client *c);

#endif
