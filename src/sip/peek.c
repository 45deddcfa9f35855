/*
 * sip/peek: the Call-ID hash of a datagram without the full parse; see
 * peek.h for the contract.
 *
 * One memchr('\n') per header line and a compare of the name's first
 * bytes, no arena, no header array: a small fraction of sip_msg_parse.
 */
#include "sip/peek.h"

#include <errno.h>
#include <string.h>

static int
lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

/* Does the line [p, eol) start with header name name (lower case),
 * then optional SP/HT, then ':'? Returns the byte after ':' or NULL. */
static const char *
name_is(const char *p, const char *eol, const char *name, size_t nlen)
{
    if ((size_t)(eol - p) <= nlen)
        return NULL;
    for (size_t i = 0; i < nlen; i++)
        if (lower((unsigned char)p[i]) != name[i])
            return NULL;
    p += nlen;
    while (p < eol && (*p == ' ' || *p == '\t'))
        p++;
    return p < eol && *p == ':' ? p + 1 : NULL;
}

int
sip_peek_call_id(const char *buf, size_t len, uint32_t *hash)
{
    const char *p = buf, *end = buf + len, *lf;

    lf = len ? memchr(p, '\n', len) : NULL;
    if (lf == NULL)
        return -ENOENT; /* no header line at all */
    p = lf + 1;
    while (p < end) {
        if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
            return -ENOENT; /* end of the headers */
        lf = memchr(p, '\n', (size_t)(end - p));
        const char *eol = lf ? lf : end, *v = NULL;
        int c0 = lower((unsigned char)*p);
        if (c0 == 'i')
            v = name_is(p, eol, "i", 1);
        else if (c0 == 'c')
            v = name_is(p, eol, "call-id", 7);
        if (v == NULL) {
            p = lf ? lf + 1 : end;
            continue;
        }
        uint32_t h = 2166136261u; /* FNV-1a */
        size_t n = 0;
        for (;;) {
            for (; v < eol; v++) {
                if (*v == ' ' || *v == '\t' || *v == '\r')
                    continue;
                h ^= (unsigned char)*v;
                h *= 16777619u;
                n++;
            }
            /* Folding: the next line goes on if it starts with SP/HT. */
            if (lf == NULL || lf + 1 >= end || (lf[1] != ' ' && lf[1] != '\t'))
                break;
            v = lf + 1;
            lf = memchr(v, '\n', (size_t)(end - v));
            eol = lf ? lf : end;
        }
        if (n == 0)
            return -ENOENT;
        /* FNV's low bits mix poorly and callers take it modulo a small
         * worker count: fmix32 (MurmurHash3). */
        h ^= h >> 16;
        h *= 0x85ebca6bu;
        h ^= h >> 13;
        h *= 0xc2b2ae35u;
        h ^= h >> 16;
        *hash = h;
        return 0;
    }
    return -ENOENT;
}
