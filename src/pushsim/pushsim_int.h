/*
 * pushsim_int.h: declarations shared inside the pushsim program.
 *
 * Threads: the HTTPS side (h2.c, the provider logic in apns.c/fcm.c and the
 * caches in struct psim) runs on one libuv loop thread. The control API
 * (control.c) runs on libmicrohttpd's own thread. They share only struct
 * psim_state, always under its mutex; the loop thread never waits on the
 * control thread for anything but that short lock.
 */
#ifndef PUSHPBX_PUSHSIM_PUSHSIM_INT_H
#define PUSHPBX_PUSHSIM_PUSHSIM_INT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/buf.h"
#include "base/list.h"
#include "base/slice.h"

/* ---- limits ---------------------------------------------------------- */
#define PSIM_BODY_MAX (64 * 1024)        /* request body */
#define PSIM_PUSH_KEEP 100000            /* pushes kept for GET /pushes */
#define PSIM_PUSH_KEEP_BYTES (64u << 20) /* ... and their total size */
#define PSIM_FAULTS_MAX 1000
#define PSIM_DEAD_MAX 100000
#define PSIM_JWT_CACHE_MAX 10000
#define PSIM_ACCESS_TOKENS_MAX 100000
#define PSIM_MAX_KEYS 32
#define PSIM_MAX_TOPICS 64
#define PSIM_MAX_ACCOUNTS 16

/* ---- string map (map.c): chained hash, owned keys, loop-agnostic ----- */
struct psim_map_entry {
    struct psim_map_entry *next;
    uint64_t hash;
    char *key; /* owned, NUL-terminated */
    size_t key_len;
    void *val; /* owned by the map's free function */
};

typedef void psim_map_free_fn(void *val);

struct psim_map {
    struct psim_map_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    psim_map_free_fn *free_val; /* NULL: values are not freed */
};

void psim_map_init(struct psim_map *m, psim_map_free_fn *free_val);
void psim_map_fini(struct psim_map *m);
void psim_map_clear(struct psim_map *m);
void *psim_map_get(const struct psim_map *m, struct slice key);
/* Insert or replace (the old value is freed). val is taken. */
void psim_map_put(struct psim_map *m, struct slice key, void *val);
void psim_map_del(struct psim_map *m, struct slice key);
/* Visit every entry; if fn returns true the entry is removed. */
void psim_map_sweep(struct psim_map *m, bool (*fn)(void *val, void *arg),
                    void *arg);

/* ---- shared state (state.c): the only thing both threads touch ------- */
enum psim_provider {
    PSIM_APNS = 0,
    PSIM_FCM = 1,
    PSIM_PROVIDERS = 2,
};

enum psim_fault_action {
    PSIM_FAULT_STATUS = 1,
    PSIM_FAULT_DELAY,
    PSIM_FAULT_RESET,
    PSIM_FAULT_GOAWAY,
    PSIM_FAULT_HANG,
};

struct psim_fault {
    struct list_node node;
    int provider; /* PSIM_APNS, PSIM_FCM or -1 for any */
    enum psim_fault_action action;
    unsigned remaining;
    int status;
    char reason[96];    /* "" = default for the status */
    long retry_after_s; /* < 0: no retry-after header */
    unsigned delay_ms;
};

struct psim_state {
    pthread_mutex_t lock;
    /* Ring of serialised push records ("{"seq":..}"), oldest first. */
    char **ring;
    size_t ring_head, ring_count;
    size_t ring_bytes;
    uint64_t first_seq; /* seq of ring[ring_head] */
    uint64_t next_seq;
    struct psim_map dead; /* token -> uint64_t* ms when marked dead */
    struct list_node faults;
    size_t nfaults;
    /* Bumped by the control thread; the loop thread compares. */
    atomic_uint apns_expire_gen;
    atomic_uint fcm_expire_gen;
    /* Counters. */
    atomic_ullong connections, streams, tokens_issued;
    uint64_t by_status[PSIM_PROVIDERS][600];
    FILE *log; /* JSONL, buffered; NULL = none */
    bool log_dirty;
};

void psim_state_init(struct psim_state *st, FILE *log);
void psim_state_fini(struct psim_state *st);
/* Take one matching fault (copied into *out). true when one applied. */
bool psim_state_take_fault(struct psim_state *st, enum psim_provider p,
                           struct psim_fault *out);
/* If token is dead, true and *ms = when it was marked. */
bool psim_state_is_dead(struct psim_state *st, struct slice token,
                        uint64_t *ms);
/* Store a push record: rec is borrowed, "seq" is added here. Writes the
 * JSONL log line too. */
void psim_state_record(struct psim_state *st, enum psim_provider p, json_t *rec,
                       int status);
void psim_state_flush_log(struct psim_state *st);
/* Control side. Each returns 0 or -EINVAL/-ENOSPC with *err set. */
int psim_state_add_dead(struct psim_state *st, struct slice token);
int psim_state_add_fault(struct psim_state *st, const struct psim_fault *f);
void psim_state_reset(struct psim_state *st);
/* JSON texts for the control API; malloc'd, caller frees. */
char *psim_state_pushes_json(struct psim_state *st, uint64_t since,
                             size_t *len);
char *psim_state_stats_json(struct psim_state *st, size_t *len);

/* ---- configuration and loop-thread caches ---------------------------- */
struct psim_apns_key {
    char kid[64];
    char team[64];
    EVP_PKEY *key; /* owned */
};

struct psim_account {
    char *project;      /* owned */
    char *client_email; /* owned */
    char *token_uri;    /* owned */
    EVP_PKEY *key;      /* owned; private key, used to verify */
};

struct psim {
    /* --apns-client-ca (owned path): the TLS server asks for a client
     * certificate and verifies it against this CA. NULL: none asked. */
    char *apns_client_ca;
    struct psim_apns_key keys[PSIM_MAX_KEYS];
    size_t nkeys;
    char *topics[PSIM_MAX_TOPICS]; /* owned; none = any bundle allowed */
    size_t ntopics;
    struct psim_account accounts[PSIM_MAX_ACCOUNTS];
    size_t naccounts;
    unsigned fcm_token_ttl_s;
    int https_port; /* actual port, for the OAuth "aud" check */
    /* Loop thread only. */
    struct psim_map jwt_cache;     /* JWT text -> struct jwt_seen */
    unsigned jwt_gen_seen;         /* last apns_expire_gen applied */
    struct psim_map access_tokens; /* token -> struct access_token */
    unsigned access_gen_seen;
    uint64_t msg_counter;
    struct psim_state state;
};

/* Request headers pushsim looks at. */
enum psim_hdr {
    PSIM_H_METHOD,
    PSIM_H_PATH,
    PSIM_H_AUTH,
    PSIM_H_CONTENT_TYPE,
    PSIM_H_APNS_TOPIC,
    PSIM_H_APNS_PUSH_TYPE,
    PSIM_H_APNS_PRIORITY,
    PSIM_H_APNS_EXPIRATION,
    PSIM_H_APNS_COLLAPSE_ID,
    PSIM_H_APNS_ID,
    PSIM_H_COUNT,
};

/* Header name (lower case, as HTTP/2 sends it) to index, or -1. */
int psim_hdr_index(struct slice name);

/* What the TLS handshake proved about a connection's client certificate
 * (only asked for with --apns-client-ca). A certificate that is not
 * trusted, expired or not yet valid never gets here: its handshake fails
 * with the matching TLS alert, as with APNs. */
enum psim_cert {
    PSIM_CERT_NONE = 0, /* no client certificate: token auth */
    PSIM_CERT_OK,       /* verified; its subject UID (bundle id) known */
    PSIM_CERT_NO_UID,   /* verified, but no UID: not a push certificate */
};

/* One request as the h2 layer hands it over; all views borrowed. A header
 * that is absent has ptr == NULL. */
struct psim_req {
    struct slice hdr[PSIM_H_COUNT];
    enum psim_cert cert; /* of the connection the request came on */
    struct slice cert_uid; /* PSIM_CERT_OK: the certificate's UID */
    bool dup_header;     /* an apns-* header or :path came twice */
    bool body_too_large; /* more than PSIM_BODY_MAX bytes arrived */
    struct slice body;
};

enum psim_action {
    PSIM_ACT_ANSWER = 0,
    PSIM_ACT_RESET,
    PSIM_ACT_GOAWAY,
    PSIM_ACT_HANG,
};

struct psim_resp {
    enum psim_action action;
    int status;
    unsigned delay_ms;
    char apns_id[40];     /* "" = no apns-id header */
    char retry_after[24]; /* "" = no retry-after header */
    struct buf body;      /* JSON text; empty = no body */
};

void psim_resp_init(struct psim_resp *r);
void psim_resp_fini(struct psim_resp *r);

/* Build the whole answer for one request (psim.c): route, apply a queued
 * fault, run the provider checks, record the push. Loop thread only. */
void psim_handle(struct psim *ps, const struct psim_req *req,
                 struct psim_resp *resp);

/* Provider halves. describe fills the push record (token, headers,
 * payload, project) from the request; handle validates and answers, and
 * puts "status"/"reason" into rec. rec is borrowed. Loop thread only. */
void psim_apns_describe(const struct psim_req *req, struct slice token,
                        json_t *rec);
void psim_apns_handle(struct psim *ps, const struct psim_req *req,
                      struct slice token, json_t *rec, struct psim_resp *resp);
void psim_fcm_describe(const struct psim_req *req, struct slice project,
                       json_t *rec);
void psim_fcm_send(struct psim *ps, const struct psim_req *req,
                   struct slice project, json_t *rec, struct psim_resp *resp);
/* Echo the request's apns-id or make one. */
void psim_apns_set_id(const struct psim_req *req, struct psim_resp *resp);
/* OAuth token endpoint; not recorded as a push. */
void psim_fcm_token(struct psim *ps, const struct psim_req *req,
                    struct psim_resp *resp);
/* Error answers in each provider's format. reason/code NULL = default for
 * the status. Return the reason or errorCode used. */
const char *psim_apns_error(struct psim_resp *resp, int status,
                            const char *reason);
const char *psim_fcm_error(struct psim_resp *resp, int status, const char *code,
                           const char *message);

uint64_t psim_now_ms(void);
void psim_init(struct psim *ps, FILE *log);
void psim_fini(struct psim *ps);

/* ---- HTTPS server (h2.c) and control API (control.c) ----------------- */
struct psim_server;
/* Listen on addr ("ip:port") serving TLS with cert and key (borrowed;
 * the SSL_CTX takes its own references); with ps->apns_client_ca, client
 * certificates are asked for (optional) and verified. Sets *port to the
 * bound port. Returns 0 or a negative libuv/errno code (-EINVAL: bad
 * address or TLS setup). Loop thread. */
int psim_server_start(struct psim *ps, void *uv_loop, const char *addr,
                      X509 *cert, EVP_PKEY *key, struct psim_server **out,
                      int *port);
/* Close the listener and every connection; the loop then runs dry. */
void psim_server_stop(struct psim_server *srv);
void psim_server_free(struct psim_server *srv);

/* Control API on addr, on libmicrohttpd's own thread. 0 or -errno. */
struct psim_control;
int psim_control_start(struct psim *ps, const char *addr,
                       struct psim_control **out, int *port);
void psim_control_stop(struct psim_control *c);

/* Split "host:port" / "[v6]:port" into a sockaddr. 0 or -EINVAL. */
struct sockaddr_storage;
int psim_parse_addr(const char *s, struct sockaddr_storage *ss);

#endif
