/*
 * pushpbx-ng: drive rtpengine through the media room's ng client (the same
 * code the workers run) and print what came back as one JSON object.
 * Used by tests/integration/test_media_ng.py against a private rtpengine,
 * and to measure the ng round trip:
 *
 *   pushpbx-ng --set media.rtpengine=udp:127.0.0.1:2223 ping
 *   pushpbx-ng --set media.rtpengine=udp:127.0.0.1:2223 --count 2000 ping
 *   pushpbx-ng --set ... offer --call-id c1 --from-tag f1 --sdp-file a.sdp \
 *       --received-from 203.0.113.7 --sip-source --transport-protocol RTP/AVP
 *
 * Options before the command: --set media.KEY=VALUE (the [media] table,
 * repeatable), --relay N (sticky relay index), --count N (N requests one
 * after another; prints p50/p99/max round trip in microseconds).
 * Exit status: 0 ok, 1 refused by rtpengine, 2 timeout or no relay, 3 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "base/log.h"
#include "base/slice.h"
#include "config/cfg.h"
#include "media/client.h"
#include "media/media_cfg.h"

struct run {
    struct media_client *client;
    struct media_ng_req req;
    int relay;
    unsigned count, done;
    uint64_t *rtt_us;
    json_t *out;
    int exit_code;
};

static json_t *
jslice(struct slice s)
{
    return s.ptr ? json_stringn(s.ptr, s.len) : json_null();
}

static void
put_answer(json_t *o, const struct media_ng_answer *a)
{
    json_object_set_new(o, "result", jslice(a->result));
    if (a->error_reason.ptr)
        json_object_set_new(o, "error_reason", jslice(a->error_reason));
    if (a->warning.ptr)
        json_object_set_new(o, "warning", jslice(a->warning));
    if (a->sdp.ptr)
        json_object_set_new(o, "sdp", jslice(a->sdp));
    if (!a->has_stats)
        return;
    json_t *legs = json_array();
    for (size_t i = 0; i < a->stats.leg_count; i++) {
        const struct media_ng_leg *l = &a->stats.legs[i];
        json_t *j = json_pack("{s:o,s:I,s:I,s:I,s:I,s:I}", "tag", jslice(l->tag),
                              "rtp_packets", (json_int_t)l->rtp_packets,
                              "rtp_bytes", (json_int_t)l->rtp_bytes,
                              "rtp_errors", (json_int_t)l->rtp_errors,
                              "rtcp_packets", (json_int_t)l->rtcp_packets,
                              "rtcp_bytes", (json_int_t)l->rtcp_bytes);
        json_object_set_new(j, "lost", l->has_lost
                                           ? json_integer((json_int_t)l->lost)
                                           : json_null());
        json_object_set_new(j, "jitter",
                            l->has_jitter ? json_integer((json_int_t)l->jitter)
                                          : json_null());
        json_array_append_new(legs, j);
    }
    json_object_set_new(o, "legs", legs);
    json_object_set_new(o, "one_way", json_boolean(a->stats.one_way));
    json_object_set_new(o, "no_media", json_boolean(a->stats.no_media));
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void on_result(void *arg, const struct media_ng_result *res);

static void
send_next(struct run *r)
{
    int rc = media_client_send(r->client, &r->req, r->relay, on_result, r,
                               NULL);
    if (rc < 0) {
        json_object_set_new(r->out, "status", json_string("not-sent"));
        json_object_set_new(r->out, "error", json_string(strerror(-rc)));
        r->exit_code = 3;
        media_client_close(r->client);
    }
}

static void
on_result(void *arg, const struct media_ng_result *res)
{
    struct run *r = arg;

    r->rtt_us[r->done++] = res->elapsed_us;
    if (res->status == MEDIA_NG_OK && r->done < r->count) {
        send_next(r);
        return;
    }
    json_object_set_new(r->out, "status",
                        json_string(media_ng_status_name(res->status)));
    json_object_set_new(r->out, "relay", json_integer(res->relay));
    json_object_set_new(r->out, "tries", json_integer(res->tries));
    json_object_set_new(r->out, "elapsed_us",
                        json_integer((json_int_t)res->elapsed_us));
    if (res->error)
        json_object_set_new(r->out, "error", json_string(res->error));
    if (res->answer)
        put_answer(r->out, res->answer);
    r->exit_code = res->status == MEDIA_NG_OK        ? 0
                   : res->status == MEDIA_NG_REFUSED ? 1
                                                     : 2;
    media_client_close(r->client);
}

static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL)
        return NULL;
    do {
        if (len + 4096 + 1 > cap) {
            cap = (len + 4096 + 1) * 2;
            data = realloc(data, cap);
            if (data == NULL)
                abort();
        }
        n = fread(data + len, 1, 4096, f);
        len += n;
    } while (n > 0);
    fclose(f);
    data[len] = '\0';
    return data;
}

static int
usage(void)
{
    fprintf(stderr,
            "usage: pushpbx-ng [--set media.K=V]... [--relay N] [--count N]\n"
            "       ping|list|offer|answer|delete|query [--call-id X]\n"
            "       [--from-tag X] [--to-tag X] [--via-branch X]\n"
            "       [--sdp TEXT|--sdp-file PATH] [--received-from IP]\n"
            "       [--sip-source] [--replace] [--ice remove|force]\n"
            "       [--transport-protocol P]\n");
    return 3;
}

int
main(int argc, char **argv)
{
    const char *sets[32];
    size_t nsets = 0;
    struct run r = {.relay = -1, .count = 1};
    char *sdp_file = NULL;
    const char *cmd = NULL;
    char err[256];
    int i;

    log_level = LOG_WARN;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--set") == 0 && v && nsets < 32) {
            sets[nsets++] = v;
            i++;
        } else if (strcmp(a, "--relay") == 0 && v) {
            r.relay = (int)strtol(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--count") == 0 && v) {
            r.count = (unsigned)strtoul(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--debug") == 0) {
            log_level = LOG_DEBUG;
        } else if (cmd == NULL && a[0] != '-') {
            cmd = a;
        } else if (strcmp(a, "--call-id") == 0 && v) {
            r.req.call_id = slice_cstr(v);
            i++;
        } else if (strcmp(a, "--from-tag") == 0 && v) {
            r.req.from_tag = slice_cstr(v);
            i++;
        } else if (strcmp(a, "--to-tag") == 0 && v) {
            r.req.to_tag = slice_cstr(v);
            i++;
        } else if (strcmp(a, "--via-branch") == 0 && v) {
            r.req.via_branch = slice_cstr(v);
            i++;
        } else if (strcmp(a, "--sdp") == 0 && v) {
            r.req.sdp = slice_cstr(v);
            i++;
        } else if (strcmp(a, "--sdp-file") == 0 && v) {
            free(sdp_file);
            sdp_file = read_file(v);
            if (sdp_file == NULL) {
                fprintf(stderr, "pushpbx-ng: %s: %s\n", v, strerror(errno));
                return 3;
            }
            r.req.sdp = slice_cstr(sdp_file);
            i++;
        } else if (strcmp(a, "--received-from") == 0 && v) {
            r.req.received_from = slice_cstr(v);
            i++;
        } else if (strcmp(a, "--sip-source") == 0) {
            r.req.sip_source = true;
        } else if (strcmp(a, "--replace") == 0) {
            r.req.replace_origin = r.req.replace_session_connection = true;
        } else if (strcmp(a, "--ice") == 0 && v) {
            r.req.ice = strcmp(v, "force") == 0 ? MEDIA_NG_ICE_FORCE
                                                : MEDIA_NG_ICE_REMOVE;
            i++;
        } else if (strcmp(a, "--transport-protocol") == 0 && v) {
            r.req.transport_protocol = slice_cstr(v);
            i++;
        } else {
            return usage();
        }
    }
    static const struct {
        const char *name;
        enum media_ng_cmd cmd;
    } cmds[] = {{"ping", MEDIA_NG_PING},     {"offer", MEDIA_NG_OFFER},
                {"answer", MEDIA_NG_ANSWER}, {"delete", MEDIA_NG_DELETE},
                {"query", MEDIA_NG_QUERY},   {"list", MEDIA_NG_LIST}};
    bool known = false;
    for (size_t k = 0; cmd && k < sizeof(cmds) / sizeof(cmds[0]); k++)
        if (strcmp(cmd, cmds[k].name) == 0) {
            r.req.cmd = cmds[k].cmd;
            known = true;
        }
    if (!known || r.count == 0)
        return usage();

    const struct cfg_section *secs[] = {&media_cfg_section};
    struct cfg *cfg = NULL;
    if (cfg_load(secs, 1, NULL, sets, nsets, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "pushpbx-ng: %s\n", err);
        return 3;
    }
    const struct media_cfg *mc = cfg_get(cfg, &media_cfg_section);
    struct media_relays *relays = NULL;
    if (media_relays_new(mc, &relays, err, sizeof(err)) < 0) {
        fprintf(stderr, "pushpbx-ng: %s\n", err);
        cfg_free(cfg);
        return 3;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    r.out = json_object();
    r.rtt_us = calloc(r.count, sizeof(uint64_t));
    if (r.rtt_us == NULL)
        abort();
    int rc = media_client_new(&loop, relays, 0, &r.client);
    if (rc < 0) {
        fprintf(stderr, "pushpbx-ng: %s\n", uv_strerror(rc));
        r.exit_code = 3;
    } else {
        send_next(&r);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    if (r.done > 1) {
        qsort(r.rtt_us, r.done, sizeof(uint64_t), cmp_u64);
        json_object_set_new(r.out, "count", json_integer(r.done));
        json_object_set_new(
            r.out, "rtt_p50_us",
            json_integer((json_int_t)r.rtt_us[(r.done - 1) / 2]));
        json_object_set_new(
            r.out, "rtt_p99_us",
            json_integer((json_int_t)r.rtt_us[(r.done - 1) * 99 / 100]));
        json_object_set_new(r.out, "rtt_max_us",
                            json_integer((json_int_t)r.rtt_us[r.done - 1]));
    }
    json_t *rl = json_array();
    for (size_t k = 0; k < media_relays_count(relays); k++) {
        struct media_relay_status st;
        media_relays_status(relays, k, &st);
        json_array_append_new(
            rl, json_pack("{s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:s}", "addr", st.addr,
                          "up", st.up, "requests", (json_int_t)st.requests,
                          "answers", (json_int_t)st.answers, "errors",
                          (json_int_t)st.errors, "timeouts",
                          (json_int_t)st.timeouts, "garbage",
                          (json_int_t)st.garbage, "last_error",
                          st.last_error));
    }
    json_object_set_new(r.out, "relays", rl);
    char *text = json_dumps(r.out, JSON_COMPACT);
    if (text) {
        puts(text);
        free(text);
    }
    json_decref(r.out);
    uv_loop_close(&loop);
    media_relays_free(relays);
    cfg_free(cfg);
    free(r.rtt_us);
    free(sdp_file);
    return r.exit_code;
}
