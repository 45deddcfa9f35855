/*
 * push: the mobile push clients (Apple APNs over HTTP/2, Google FCM HTTP v1)
 * behind one provider-neutral API.
 *
 * A push_client lives on one libuv loop and drives libcurl's multi interface
 * through that loop (curl_multi_socket_action with uv_poll_t/uv_timer_t, as
 * curl's docs/examples/multi-uv.c): no thread per push and no blocking call.
 * Each provider has its own curl multi handle limited to one connection per
 * host, so all pushes to one provider are HTTP/2 streams multiplexed over a
 * single long-lived TLS connection (Apple asks for exactly that).
 *
 * Every accepted push ends in exactly one call of its completion callback:
 * delivered, dead token, retry exhausted, failed or cancelled. Retries
 * (429/5xx/timeouts/resets) use exponential backoff with jitter, honour
 * Retry-After, and stop when the message's deadline (the ring time) passes.
 *
 * Expected load: a few pushes per incoming call; bursts of hundreds. The
 * benchmark (bench/push_bench.c) measures thousands per second.
 *
 * Thread: everything here runs on the loop's thread.
 */
#ifndef PUSHPBX_PUSH_PUSH_H
#define PUSHPBX_PUSH_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define PUSH_APNS_PRODUCTION_URL "https://api.push.apple.com"
#define PUSH_APNS_SANDBOX_URL "https://api.sandbox.push.apple.com"
#define PUSH_FCM_DEFAULT_URL "https://fcm.googleapis.com"
#define PUSH_FCM_SCOPE "https://www.googleapis.com/auth/firebase.messaging"

/* APNs configuration. Strings are borrowed for push_client_new only (the
 * client copies what it keeps). Token auth (key_file + key_id + team_id) is
 * used when key_file is set, else certificate auth (cert_file +
 * cert_key_file). */
struct push_apns_conf {
    bool enabled;
    const char *base_url;      /* NULL: production, or sandbox if sandbox */
    bool sandbox;              /* only used when base_url is NULL */
    const char *key_file;      /* .p8 (PKCS#8 PEM, EC P-256) */
    const char *key_id;        /* 10-char Key ID (JWT kid) */
    const char *team_id;       /* 10-char Team ID (JWT iss) */
    const char *topic;         /* bundle id, used when pn-param is absent */
    const char *cert_file;     /* certificate auth: client cert (PEM) */
    const char *cert_key_file; /* certificate auth: its key (PEM) */
    const char *ca_file;       /* NULL: system CAs */
    unsigned timeout_ms;       /* per attempt; 0: 10000 */
    unsigned jwt_refresh_s;    /* JWT age before re-minting; 0: 3000 (50 min)*/
};

/* FCM HTTP v1 configuration; strings borrowed as above. */
struct push_fcm_conf {
    bool enabled;
    const char *service_account_file; /* Google service-account JSON */
    const char *base_url;             /* NULL: https://fcm.googleapis.com */
    const char *token_uri;            /* NULL: the account file's token_uri */
    const char *ca_file;              /* NULL: system CAs */
    unsigned timeout_ms;              /* per attempt; 0: 10000 */
};

struct push_conf {
    struct push_apns_conf apns;
    struct push_fcm_conf fcm;
    unsigned queue_max;          /* pushes per provider not yet done; 0: 4096 */
    unsigned max_attempts;       /* per push, first try included; 0: 6 */
    unsigned backoff_initial_ms; /* first retry delay; 0: 250 */
    unsigned backoff_max_ms;     /* cap of the doubling delay; 0: 8000 */
};

enum push_provider {
    PUSH_APNS = 0,
    PUSH_FCM = 1,
};

enum push_type {
    PUSH_CALL = 0,               /* incoming call: rings the app */
    PUSH_MISSED = 1,             /* caller gave up / no answer */
    PUSH_ANSWERED_ELSEWHERE = 2, /* another device answered: clear the UI */
    PUSH_MESSAGE = 3, /* a chat message was stored for the app
                         (docs/messages.md): always an alert on iOS,
                         never a VoIP push */
};

/* One push. All strings are borrowed for the push_send call (copied). */
struct push_msg {
    enum push_provider provider;
    const char *token; /* pn-prid: APNs device token (hex) / FCM token */
    /* pn-param: APNs "<TeamID>.<bundle>[.voip]" (a topic without the team
     * prefix is accepted too), FCM project id. NULL: from the config. */
    const char *param;
    enum push_type type;
    /* Calls: required; also the source of the collapse id. PUSH_MESSAGE:
     * ignored (the collapse id is per conversation, from -> to). */
    const char *call_id;
    const char *from;      /* caller's number/user, required */
    const char *from_name; /* display name; may be NULL; truncated if long */
    const char *to;        /* called extension, required */
    int64_t sent_at_s;     /* UNIX seconds; 0: now */
    /* UNIX seconds after which the push is useless (end of ring time): sent
     * as apns-expiration / FCM ttl and as "expires_at" in the payload, and
     * no retry starts after it. 0: no expiry (missed-call pushes).
     * PUSH_MESSAGE: when the stored message expires. */
    int64_t expires_at_s;
    /* PUSH_MESSAGE only (ignored otherwise): */
    const char *message_id;   /* required: the stored message's id */
    const char *content_type; /* the MESSAGE's Content-Type; NULL = "" */
    /* The text to preview, as received: any bytes (invalid UTF-8 is
     * replaced, the text cut to fit the provider's limit at a character
     * boundary). NULL: no preview ([push] message_preview = no): the
     * alert says "New message" and the payload has "preview":"". Only
     * the first PUSH_PREVIEW_MAX_IN bytes are used. */
    const char *preview;
    size_t preview_len;
};

/* Bytes of push_msg.preview considered at most (the result is cut to the
 * provider's 4 KiB anyway). */
#define PUSH_PREVIEW_MAX_IN 4096

enum push_status {
    PUSH_DELIVERED = 0,       /* provider accepted it (200) */
    PUSH_DEAD_TOKEN = 1,      /* token is gone: delete the push device */
    PUSH_RETRY_EXHAUSTED = 2, /* transient errors until deadline/attempts */
    PUSH_FAILED = 3,          /* permanent error (config, auth, payload) */
    PUSH_CANCELLED = 4,       /* push_client_free ran first */
};

struct push_result {
    enum push_status status;
    enum push_provider provider;
    long http_status;     /* of the last attempt; 0 if none answered */
    const char *reason;   /* provider reason ("Unregistered",
                           * "UNREGISTERED"), or ours ("timeout", "queue
                           * full"); "" on success. Valid during the cb. */
    const char *id;       /* apns-id (UUID we made) / FCM message name */
    unsigned attempts;    /* HTTP requests made */
    uint64_t latency_us;  /* push_send to completion */
    uint64_t write_us;    /* push_send to the first request about to be
                           * written (curl PRETRANSFER); 0 if never */
};

typedef void push_done_cb(const struct push_result *r, void *arg);

struct push_client; /* opaque */

/* Create a client on loop. Loads keys and service-account files now: on a
 * bad file returns NULL with "file: reason" in err. Providers not enabled
 * are not set up. Returns an owned client (push_client_free). */
struct push_client *push_client_new(uv_loop_t *loop,
                                    const struct push_conf *conf, char *err,
                                    size_t errlen);

/* Queue a push. On 0 the callback runs exactly once, later, from the loop
 * (never from inside push_send). APNs: a VoIP push (topic <bundle>.voip)
 * only for PUSH_CALL to a .voip pn-param; every other push is an alert to
 * the bundle topic (".voip" stripped). Such an alert carries the
 * device's VoIP token, which Apple refuses for the bundle topic with 400
 * DeviceTokenNotForTopic: that says nothing about the token's VoIP use,
 * so it is PUSH_FAILED with that reason, not PUSH_DEAD_TOKEN (410
 * Unregistered still is: an uninstalled app's tokens all go). On error
 * the callback is never called:
 * -ENOTSUP provider not enabled, -EINVAL bad message (missing field, token
 * with characters that cannot be sent), -EMSGSIZE payload cannot fit even
 * with the display name truncated, -ENOBUFS provider queue full ("queue
 * full"). Loop thread only. */
int push_send(struct push_client *c, const struct push_msg *msg,
              push_done_cb *cb, void *arg);

/* Pushes accepted and not yet completed, for one provider. */
unsigned push_pending(const struct push_client *c, enum push_provider p);

/* Cancel everything (callbacks get PUSH_CANCELLED before this returns),
 * close connections and start closing the libuv handles. The memory is
 * released from the close callbacks, so keep running the loop until it has
 * no more handles (as with any libuv handle). Must not be called from a
 * push_done_cb. NULL is a no-op. */
void push_client_free(struct push_client *c);

/* For the push check with certificate auth (a->cert_file set): append
 * "; certificate <subject>; topics ...; expires <date> (N days left)" to
 * the NUL-terminated text in detail (cap len, truncating), read from the
 * certificate now. Appends nothing if it cannot be read (the client's
 * set-up error says why). Any thread. */
void push_apns_cert_note(const struct push_apns_conf *a, char *detail,
                         size_t len);

const char *push_status_name(enum push_status s);
const char *push_provider_name(enum push_provider p);
const char *push_type_name(enum push_type t);
/* Text for push_send's negative codes. */
const char *push_strerror(int rc);

#endif
