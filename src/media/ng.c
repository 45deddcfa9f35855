/*
 * media/ng: ng requests, datagram framing and answers (see ng.h). The
 * answer parser reads only the keys pushpbx uses and tolerates anything
 * else: rtpengine adds keys from release to release.
 */
#include "media/ng.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const char *const cmd_names[] = {
    [MEDIA_NG_PING] = "ping",     [MEDIA_NG_OFFER] = "offer",
    [MEDIA_NG_ANSWER] = "answer", [MEDIA_NG_DELETE] = "delete",
    [MEDIA_NG_QUERY] = "query",   [MEDIA_NG_LIST] = "list",
};

const char *
media_ng_cmd_name(enum media_ng_cmd cmd)
{
    if ((size_t)cmd >= sizeof(cmd_names) / sizeof(cmd_names[0]))
        return "?";
    return cmd_names[cmd];
}

static int
need(struct slice s, const char *why_missing, const char **why)
{
    if (s.len == 0) {
        *why = why_missing;
        return -EINVAL;
    }
    return 0;
}

/* Family of an IP literal: 4, 6 or 0 when it is not one. */
static int
ip_family(struct slice s)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];

    if (s.len == 0 || s.len >= sizeof(tmp))
        return 0;
    memcpy(tmp, s.ptr, s.len);
    tmp[s.len] = '\0';
    if (inet_pton(AF_INET, tmp, bin) == 1)
        return 4;
    if (inet_pton(AF_INET6, tmp, bin) == 1)
        return 6;
    return 0;
}

#define TRY(x)                \
    do {                      \
        int rc_ = (x);        \
        if (rc_ < 0)          \
            return rc_;       \
    } while (0)

static int
opt_kv(struct buf *b, const char *key, struct slice v)
{
    return v.len ? media_benc_kv(b, key, v) : 0;
}

int
media_ng_build(const struct media_ng_req *r, struct buf *out,
               const char **why)
{
    const char *dummy;
    int fam = 0;

    if (why == NULL)
        why = &dummy;
    *why = NULL;
    switch (r->cmd) {
    case MEDIA_NG_PING:
    case MEDIA_NG_LIST:
        break;
    case MEDIA_NG_ANSWER:
        TRY(need(r->to_tag, "answer needs to-tag", why));
        /* fall through */
    case MEDIA_NG_OFFER:
        TRY(need(r->call_id, "missing call-id", why));
        TRY(need(r->from_tag, "missing from-tag", why));
        TRY(need(r->sdp, "missing sdp", why));
        break;
    case MEDIA_NG_DELETE:
    case MEDIA_NG_QUERY:
        TRY(need(r->call_id, "missing call-id", why));
        break;
    default:
        *why = "unknown command";
        return -EINVAL;
    }
    if (r->received_from.len) {
        fam = ip_family(r->received_from);
        if (fam == 0) {
            *why = "received-from is not an IP address";
            return -EINVAL;
        }
    }
    bool sdp_cmd = r->cmd == MEDIA_NG_OFFER || r->cmd == MEDIA_NG_ANSWER;

    TRY(media_benc_dict(out));
    TRY(media_benc_kv(out, "command", slice_cstr(media_ng_cmd_name(r->cmd))));
    if (r->cmd == MEDIA_NG_PING || r->cmd == MEDIA_NG_LIST) {
        if (r->cmd == MEDIA_NG_LIST && r->list_limit) {
            TRY(media_benc_cstr(out, "limit"));
            TRY(media_benc_int(out, r->list_limit));
        }
        return media_benc_end(out);
    }
    TRY(media_benc_kv(out, "call-id", r->call_id));
    TRY(opt_kv(out, "from-tag", r->from_tag));
    TRY(opt_kv(out, "to-tag", r->to_tag));
    TRY(opt_kv(out, "via-branch", r->via_branch));
    if (sdp_cmd) {
        if (fam) {
            TRY(media_benc_cstr(out, "received-from"));
            TRY(media_benc_list(out));
            TRY(media_benc_cstr(out, fam == 4 ? "IP4" : "IP6"));
            TRY(media_benc_str(out, r->received_from));
            TRY(media_benc_end(out));
        }
        if (r->sip_source) {
            TRY(media_benc_cstr(out, "flags"));
            TRY(media_benc_list(out));
            TRY(media_benc_cstr(out, "SIP-source-address"));
            TRY(media_benc_end(out));
        }
        if (r->replace_origin || r->replace_session_connection) {
            TRY(media_benc_cstr(out, "replace"));
            TRY(media_benc_list(out));
            if (r->replace_origin)
                TRY(media_benc_cstr(out, "origin"));
            if (r->replace_session_connection)
                TRY(media_benc_cstr(out, "session-connection"));
            TRY(media_benc_end(out));
        }
        if (r->ice == MEDIA_NG_ICE_REMOVE)
            TRY(media_benc_kv(out, "ICE", SLICE_LIT("remove")));
        else if (r->ice == MEDIA_NG_ICE_FORCE)
            TRY(media_benc_kv(out, "ICE", SLICE_LIT("force")));
        TRY(opt_kv(out, "transport-protocol", r->transport_protocol));
        TRY(media_benc_kv(out, "sdp", r->sdp));
    }
    return media_benc_end(out);
}

int
media_ng_split(const char *p, size_t len, struct slice *cookie,
               struct slice *body, const char **why)
{
    size_t i;

    for (i = 0; i < len && i <= MEDIA_NG_COOKIE_MAX; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == ' ')
            break;
        if (c <= 0x20 || c >= 0x7f) {
            *why = "ng: bad byte in cookie";
            return -EINVAL;
        }
    }
    if (i == 0 || i >= len || p[i] != ' ') {
        *why = i > MEDIA_NG_COOKIE_MAX ? "ng: cookie too long"
                                       : "ng: no cookie";
        return -EINVAL;
    }
    *cookie = slice_make(p, i);
    *body = slice_make(p + i + 1, len - i - 1);
    return 0;
}

static uint64_t
get_u64(const struct media_benc *n, const struct media_benc *d,
        const char *key)
{
    int64_t v;
    return media_benc_get_int(n, d, key, &v) && v > 0 ? (uint64_t)v : 0;
}

static bool
list_has(const struct media_benc *n, const struct media_benc *list,
         const char *s)
{
    for (const struct media_benc *it = media_benc_first(n, list); it;
         it = media_benc_next(n, it))
        if (it->type == MEDIA_BENC_STR && slice_eq_cstr(it->str, s))
            return true;
    return false;
}

/* RTCP-derived figures about ssrc from the top-level "SSRC" dict. */
static void
leg_ssrc(const struct media_benc *n, const struct media_benc *root,
         int64_t ssrc, struct media_ng_leg *leg)
{
    char key[24];
    const struct media_benc *all, *s, *mos;
    int64_t v;

    all = media_benc_get_type(n, root, "SSRC", MEDIA_BENC_DICT);
    if (all == NULL)
        return;
    snprintf(key, sizeof(key), "%lld", (long long)ssrc);
    s = media_benc_get_type(n, all, key, MEDIA_BENC_DICT);
    if (s == NULL)
        return;
    if (media_benc_get_int(n, s, "cumulative loss", &v) && v >= 0) {
        leg->has_lost = true;
        leg->lost = (uint64_t)v;
    }
    mos = media_benc_get_type(n, s, "average MOS", MEDIA_BENC_DICT);
    if (mos && media_benc_get_int(n, mos, "jitter", &v) && v >= 0) {
        leg->has_jitter = true;
        leg->jitter = (uint64_t)v;
    }
}

static void
leg_stats(const struct media_benc *n, const struct media_benc *root,
          const struct media_benc *key, const struct media_benc *tag,
          struct media_ng_leg *leg)
{
    struct slice name = media_benc_get_str(n, tag, "tag");

    *leg = (struct media_ng_leg){.tag = name.ptr ? name : key->str};
    const struct media_benc *medias =
        media_benc_get_type(n, tag, "medias", MEDIA_BENC_LIST);
    for (const struct media_benc *m = media_benc_first(n, medias); m;
         m = media_benc_next(n, m)) {
        const struct media_benc *streams =
            media_benc_get_type(n, m, "streams", MEDIA_BENC_LIST);
        for (const struct media_benc *s = media_benc_first(n, streams); s;
             s = media_benc_next(n, s)) {
            const struct media_benc *st =
                media_benc_get_type(n, s, "stats", MEDIA_BENC_DICT);
            const struct media_benc *flags =
                media_benc_get_type(n, s, "flags", MEDIA_BENC_LIST);
            int64_t ssrc;
            if (st == NULL)
                continue;
            if (list_has(n, flags, "RTCP")) {
                leg->rtcp_packets += get_u64(n, st, "packets");
                leg->rtcp_bytes += get_u64(n, st, "bytes");
                continue;
            }
            leg->rtp_packets += get_u64(n, st, "packets");
            leg->rtp_bytes += get_u64(n, st, "bytes");
            leg->rtp_errors += get_u64(n, st, "errors");
            if (media_benc_get_int(n, s, "SSRC", &ssrc))
                leg_ssrc(n, root, ssrc, leg);
        }
    }
}

int
media_ng_parse_answer(const char *p, size_t len, struct media_benc *nodes,
                      size_t cap, struct media_ng_answer *out,
                      const char **why)
{
    const char *dummy;
    size_t count;
    int rc;

    if (why == NULL)
        why = &dummy;
    *out = (struct media_ng_answer){0};
    rc = media_benc_decode(p, len, nodes, cap, 0, &count, why);
    if (rc < 0)
        return rc;
    const struct media_benc *root = &nodes[0];
    if (root->type != MEDIA_BENC_DICT) {
        *why = "ng: answer is not a dict";
        return -EINVAL;
    }
    out->result = media_benc_get_str(nodes, root, "result");
    if (out->result.ptr == NULL) {
        *why = "ng: answer without result";
        return -EINVAL;
    }
    out->ok = slice_eq_cstr(out->result, "ok") ||
              slice_eq_cstr(out->result, "pong");
    out->error_reason = media_benc_get_str(nodes, root, "error-reason");
    out->warning = media_benc_get_str(nodes, root, "warning");
    out->sdp = media_benc_get_str(nodes, root, "sdp");
    out->nodes = nodes;
    out->node_count = count;

    const struct media_benc *tags =
        media_benc_get_type(nodes, root, "tags", MEDIA_BENC_DICT);
    if (tags == NULL)
        return 0;
    out->has_stats = true;
    struct media_ng_stats *st = &out->stats;
    for (const struct media_benc *k = media_benc_first(nodes, tags); k;) {
        const struct media_benc *v = media_benc_next(nodes, k);
        if (v == NULL)
            break;
        /* The tag "" is the side that has not answered yet: no leg. */
        if (v->type == MEDIA_BENC_DICT && k->str.len > 0 &&
            st->leg_count < MEDIA_NG_MAX_LEGS)
            leg_stats(nodes, root, k, v, &st->legs[st->leg_count++]);
        k = media_benc_next(nodes, v);
    }
    size_t flowing = 0;
    for (size_t i = 0; i < st->leg_count; i++)
        flowing += st->legs[i].rtp_packets > 0;
    st->no_media = flowing == 0;
    st->one_way = flowing > 0 && flowing < st->leg_count;
    return 0;
}

int
media_ng_addr_parse(const char *s, struct sockaddr_storage *out,
                    socklen_t *len, const char **why)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *h, *colon, *hend;
    unsigned long long port;

    memset(out, 0, sizeof(*out));
    if (strncmp(s, "udp:", 4) == 0)
        s += 4;
    if (*s == '[') {
        h = s + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':') {
            *why = "expected [IPv6]:port";
            return -EINVAL;
        }
        colon = hend + 1;
    } else {
        h = s;
        colon = strrchr(s, ':');
        if (colon == NULL) {
            *why = "expected udp:host:port";
            return -EINVAL;
        }
        hend = colon;
    }
    if ((size_t)(hend - h) == 0 || (size_t)(hend - h) >= sizeof(host)) {
        *why = "bad host";
        return -EINVAL;
    }
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    if (slice_to_u64(slice_cstr(colon + 1), 65535, &port) < 0 || port == 0) {
        *why = "bad port";
        return -EINVAL;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return 0;
    }
    *why = "host is not an IP address (no DNS names)";
    return -EINVAL;
}
