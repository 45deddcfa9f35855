/*
 * libFuzzer target for media/bencode and media/ng's answer parser: the
 * input is one datagram as the ng client would receive it. Invariants
 * checked: a decode either succeeds or gives a reason; every node's slice
 * lies inside the input and every link points inside the node array; the
 * decoder accepts only the canonical encoding, so encoding the decoded
 * tree again gives back exactly the input bytes; the answer parser (after
 * the cookie split) never counts more legs than it holds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "media/bencode.h"
#include "media/ng.h"

#define CAP 4096
static struct media_benc nodes[CAP];

static void
within(struct slice s, const char *buf, size_t len)
{
    if (s.len == 0)
        return;
    if (s.ptr < buf || s.ptr + s.len > buf + len)
        abort();
}

static void
encode(const struct media_benc *n, struct buf *b)
{
    switch (n->type) {
    case MEDIA_BENC_STR:
        media_benc_str(b, n->str);
        break;
    case MEDIA_BENC_INT:
        media_benc_int(b, n->num);
        break;
    case MEDIA_BENC_LIST:
    case MEDIA_BENC_DICT:
        n->type == MEDIA_BENC_LIST ? media_benc_list(b) : media_benc_dict(b);
        for (const struct media_benc *c = media_benc_first(nodes, n); c;
             c = media_benc_next(nodes, c))
            encode(c, b);
        media_benc_end(b);
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *why = NULL;
    size_t count = 0;

    int rc = media_benc_decode(p, size, nodes, CAP, 0, &count, &why);
    if (rc != 0) {
        if (why == NULL || count != 0)
            abort();
    } else {
        if (count == 0 || count > CAP)
            abort();
        for (size_t i = 0; i < count; i++) {
            if (nodes[i].type != MEDIA_BENC_INT)
                within(nodes[i].str, p, size);
            if (nodes[i].child >= count || nodes[i].next >= count)
                abort();
        }
        struct buf b;
        buf_init(&b, 0);
        encode(&nodes[0], &b);
        if (b.len != size || (size && memcmp(b.data, p, size) != 0))
            abort();
        buf_fini(&b);
    }

    struct slice cookie, body;
    if (media_ng_split(p, size, &cookie, &body, &why) == 0) {
        struct media_ng_answer a;
        within(cookie, p, size);
        within(body, p, size);
        if (media_ng_parse_answer(body.ptr, body.len, nodes, CAP, &a, &why) ==
            0) {
            if (a.stats.leg_count > MEDIA_NG_MAX_LEGS)
                abort();
            within(a.sdp, p, size);
            within(a.result, p, size);
            for (size_t i = 0; i < a.stats.leg_count; i++)
                within(a.stats.legs[i].tag, p, size);
        } else if (why == NULL) {
            abort();
        }
    }
    return 0;
}
