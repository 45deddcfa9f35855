/*
 * libFuzzer target for sip/uri. The input is one URI, or two separated by
 * a newline. Invariants checked: slices of a parsed URI lie inside the
 * input; a URI equals itself (plain and RFC 8599 comparison) and a copy of
 * itself; equality is symmetric; unescaping a parsed part never fails
 * (the parser validated every escape) and never grows it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "sip/uri.h"

static void
within(struct slice s, const char *buf, size_t len)
{
    if (s.len == 0)
        return;
    if (s.ptr < buf || s.ptr + s.len > buf + len)
        abort();
}

static void
check_one(const char *buf, size_t len, struct arena *a)
{
    struct sip_uri u, copy;
    const char *why = NULL;
    struct slice v, out;

    if (sip_uri_parse(slice_make(buf, len), &u, &why) != 0) {
        if (!why)
            abort();
        return;
    }
    within(u.scheme_name, buf, len);
    within(u.user, buf, len);
    within(u.password, buf, len);
    within(u.host, buf, len);
    within(u.params, buf, len);
    within(u.headers, buf, len);
    static const char *const names[] = {"transport", "lr",          "maddr",
                                        "pn-prid",   "pn-provider", "user"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (sip_uri_param(&u, names[i], &v))
            within(v, buf, len);
    }
    if (!sip_uri_equal(&u, &u) || !sip_uri_pn_equal(&u, &u))
        abort();
    /* A copy at another address compares equal too. */
    char *dup = malloc(len ? len : 1);
    memcpy(dup, buf, len);
    if (sip_uri_parse(slice_make(dup, len), &copy, &why) != 0 ||
        !sip_uri_equal(&u, &copy) || !sip_uri_equal(&copy, &u))
        abort();
    free(dup);
    if (u.scheme != SIP_URI_OTHER) {
        struct slice parts[] = {u.user, u.password, u.params, u.headers};
        for (size_t i = 0; i < 4; i++) {
            if (sip_unescape(parts[i], a, &out) != 0 || out.len > parts[i].len)
                abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const char *nl = memchr(buf, '\n', size);
    struct arena a;

    arena_init(&a, 1 << 20);
    check_one(buf, size, &a);
    if (nl) {
        size_t n1 = (size_t)(nl - buf);
        struct sip_uri x, y;
        const char *why;
        check_one(nl + 1, size - n1 - 1, &a);
        if (sip_uri_parse(slice_make(buf, n1), &x, &why) == 0 &&
            sip_uri_parse(slice_make(nl + 1, size - n1 - 1), &y, &why) == 0) {
            if (sip_uri_equal(&x, &y) != sip_uri_equal(&y, &x) ||
                sip_uri_pn_equal(&x, &y) != sip_uri_pn_equal(&y, &x))
                abort();
            /* pn_equal is equal plus more. */
            if (sip_uri_pn_equal(&x, &y) && !sip_uri_equal(&x, &y))
                abort();
            (void)sip_uri_pn_params_equal(&x, &y);
        }
    }
    arena_fini(&a);
    return 0;
}
