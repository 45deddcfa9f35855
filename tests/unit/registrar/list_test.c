/*
 * list_test: the admin's listing by pages (reg_list_page: order, cursor,
 * limits, changes between pages) and the restore of many bindings from
 * the store (reg_load at 10,000 extensions: counts, per-extension order,
 * parsed push params, every extension listed once in order).
 */
#include <errno.h>

#include "reg_harness.h"

struct page {
    char num[64][33];
    size_t bindings[64];
    size_t n;
};

static void
on_ext(const char *ext, const char *display, bool enabled,
       const struct reg_contact *contacts, size_t count, void *arg)
{
    struct page *p = arg;
    (void)display;
    (void)enabled;
    (void)contacts;
    assert_true(p->n < 64);
    snprintf(p->num[p->n], sizeof(p->num[p->n]), "%s", ext);
    p->bindings[p->n] = count;
    p->n++;
}

static size_t
page(struct t *t, const char *after, size_t limit, struct page *p,
     struct reg_page *pg)
{
    memset(p, 0, sizeof(*p));
    size_t n = reg_list_page(t->r, after, limit, on_ext, p, pg);
    assert_int_equal(n, p->n);
    return n;
}

static void
add(struct t *t, const char *number)
{
    assert_int_equal(reg_ext_set(t->r, number, "", "pw-long-enough", true, 1),
                     0);
}

static int
setup(void **state)
{
    struct t *t = rh_setup(false);
    /* Added out of order, mixed lengths and letters. */
    static const char *const nums[] = {"101", "9", "a", "1000", "99",
                                       "B",   "10", "100"};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        add(t, nums[i]);
    *state = t;
    return 0;
}

static void
test_page_order_and_cursor(void **state)
{
    struct t *t = *state;
    struct page p;
    struct reg_page pg;

    /* Listing order: shorter first, then bytes ("9" < "B" < "a"). */
    assert_int_equal(page(t, NULL, 3, &p, &pg), 3);
    assert_string_equal(p.num[0], "9");
    assert_string_equal(p.num[1], "B");
    assert_string_equal(p.num[2], "a");
    assert_int_equal(pg.total, 8);
    assert_true(pg.more);
    assert_string_equal(pg.next, "a");

    assert_int_equal(page(t, pg.next, 3, &p, &pg), 3);
    assert_string_equal(p.num[0], "10");
    assert_string_equal(p.num[1], "99");
    assert_string_equal(p.num[2], "100");
    assert_true(pg.more);

    assert_int_equal(page(t, pg.next, 3, &p, &pg), 2);
    assert_string_equal(p.num[0], "101");
    assert_string_equal(p.num[1], "1000");
    assert_false(pg.more);
    assert_string_equal(pg.next, "1000");

    /* "" is the start, like NULL. */
    assert_int_equal(page(t, "", 1, &p, &pg), 1);
    assert_string_equal(p.num[0], "9");
}

static void
test_page_bounds(void **state)
{
    struct t *t = *state;
    struct page p;
    struct reg_page pg;

    /* limit 0: nothing, but the total and "more" are told. */
    assert_int_equal(page(t, NULL, 0, &p, &pg), 0);
    assert_int_equal(pg.total, 8);
    assert_true(pg.more);
    assert_string_equal(pg.next, "");
    /* A limit above the cap is cut to REG_PAGE_MAX: all 8 here. */
    assert_int_equal(page(t, NULL, 100000, &p, &pg), 8);
    assert_false(pg.more);
    /* A cursor that is no extension still places the page. */
    assert_int_equal(page(t, "0999", 10, &p, &pg), 1);
    assert_string_equal(p.num[0], "1000");
    assert_int_equal(page(t, "50", 10, &p, &pg), 4);
    assert_string_equal(p.num[0], "99");
    /* Past the end: an empty page. */
    assert_int_equal(page(t, "zzzzz", 10, &p, &pg), 0);
    assert_false(pg.more);
    assert_string_equal(pg.next, "");
}

static void
test_page_changes_between_pages(void **state)
{
    struct t *t = *state;
    struct page p;
    struct reg_page pg;

    assert_int_equal(page(t, NULL, 3, &p, &pg), 3);
    assert_string_equal(pg.next, "a");
    /* Between pages: the cursor's own extension and the next page's
     * first are deleted, one is added behind the cursor (not seen again)
     * and one ahead of it (seen). */
    assert_int_equal(reg_ext_del(t->r, "a"), 0);
    assert_int_equal(reg_ext_del(t->r, "10"), 0);
    add(t, "0");
    add(t, "555");
    assert_int_equal(page(t, "a", 10, &p, &pg), 5);
    assert_string_equal(p.num[0], "99");
    assert_string_equal(p.num[1], "100");
    assert_string_equal(p.num[2], "101");
    assert_string_equal(p.num[3], "555");
    assert_string_equal(p.num[4], "1000");
    assert_int_equal(pg.total, 8);
    assert_false(pg.more);
    /* And from the start, the new one is first. */
    assert_int_equal(page(t, NULL, 1, &p, &pg), 1);
    assert_string_equal(p.num[0], "0");
    /* One extension alone. */
    memset(&p, 0, sizeof(p));
    assert_int_equal(reg_list_ext(t->r, "555", on_ext, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(reg_list_ext(t->r, "a", on_ext, &p), -ENOENT);
    assert_int_equal(reg_list_ext(t->r, "bad number!", on_ext, &p),
                     -ENOENT);
}

/* ---- restore of many bindings ------------------------------------------ */

#define MANY 10000

struct walk {
    char last[33];
    size_t count, bindings;
    bool ordered;
};

static void
on_walk(const char *ext, const char *display, bool enabled,
        const struct reg_contact *contacts, size_t count, void *arg)
{
    struct walk *w = arg;
    size_t la = strlen(w->last), lb = strlen(ext);
    (void)display;
    (void)enabled;
    (void)contacts;
    if (w->count && !(la < lb || (la == lb && strcmp(w->last, ext) < 0)))
        w->ordered = false;
    snprintf(w->last, sizeof(w->last), "%s", ext);
    w->count++;
    w->bindings += count;
}

static void
test_restore_many(void **state)
{
    struct t *t = *state;
    int64_t now = t->now_ms / 1000;
    char num[16], key[64], uri[256], src[32];

    /* Rows written as the daemon writes them: MANY extensions of 1 to 5
     * digits (so that byte order is not listing order), one push binding
     * each, two for every tenth (the newer one must come first). */
    for (int i = 0; i < MANY; i++) {
        snprintf(num, sizeof(num), "%d", i);
        struct store_ext se = {.number = num,
                               .display = "",
                               .realm = REALM,
                               .ha1_md5 = "0123456789abcdef0123456789abcdef",
                               .ha1_sha256 = "0123456789abcdef0123456789abcdef"
                                             "0123456789abcdef0123456789abcdef",
                               .enabled = true,
                               .max_push_devices = 1};
        assert_int_equal(store_ext_put(t->st, &se), 0);
        /* The newer binding (k = 1) is written first: rows come back in
         * the order written, and reg_load must still put it first. */
        for (int k = i % 10 == 0 ? 1 : 0; k >= 0; k--) {
            snprintf(key, sizeof(key), "urn:uuid:%08d-%d#0", i, k);
            snprintf(uri, sizeof(uri),
                     "sip:%d@10.0.%d.%d:5060;pn-provider=apns;"
                     "pn-prid=%08x%08x;pn-param=T.app.voip",
                     i, (i >> 8) & 255, i & 255, (unsigned)i, (unsigned)k);
            snprintf(src, sizeof(src), "10.0.%d.%d:5060", (i >> 8) & 255,
                     i & 255);
            struct store_binding sb = {.ext = num,
                                       .key = key,
                                       .uri = uri,
                                       .params = "",
                                       .instance = "",
                                       .call_id = "c",
                                       .cseq = 1,
                                       .expires_at = now + 3600,
                                       .updated_at = now - 10 + k,
                                       .path = "",
                                       .source = src,
                                       .user_agent = "UA"};
            assert_int_equal(store_binding_put(t->st, &sb), 0);
        }
        if (i % 1000 == 999)
            assert_int_equal(store_sync(t->st), 0); /* bounded queue */
    }
    assert_int_equal(store_sync(t->st), 0);

    reg_free(t->r);
    start_reg(t);
    assert_int_equal(reg_load(t->r), 0);
    struct reg_stats s;
    reg_get_stats(t->r, &s);
    assert_int_equal(s.extensions, MANY);
    assert_int_equal(s.bindings, MANY + MANY / 10);

    /* Newest first, push params parsed from the stored URI. */
    struct arena a;
    struct reg_contact *v;
    size_t n;
    arena_init(&a, 65536);
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("4230"), &a, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].pn_prid, "0000108600000001");
    assert_string_equal(v[1].pn_prid, "0000108600000000");
    assert_string_equal(v[0].pn_provider, "apns");
    assert_string_equal(v[0].pn_param, "T.app.voip");
    char want[32];
    snprintf(want, sizeof(want), "10.0.%d.%d", (4230 >> 8) & 255,
             4230 & 255);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&v[0].addr;
    struct in_addr ip;
    assert_int_equal(inet_pton(AF_INET, want, &ip), 1);
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(in->sin_addr.s_addr, ip.s_addr);
    assert_int_equal(ntohs(in->sin_port), 5060);
    arena_fini(&a);

    /* Every extension once, in listing order, page by page. */
    struct walk w = {.ordered = true};
    struct reg_page pg = {0};
    size_t pages = 0;
    do {
        char after[33];
        snprintf(after, sizeof(after), "%s", pg.next);
        reg_list_page(t->r, after, REG_PAGE_MAX, on_walk, &w, &pg);
        assert_int_equal(pg.total, MANY);
        pages++;
    } while (pg.more);
    assert_int_equal(pages, MANY / REG_PAGE_MAX);
    assert_int_equal(w.count, MANY);
    assert_int_equal(w.bindings, MANY + MANY / 10);
    assert_true(w.ordered);
    assert_string_equal(w.last, "9999");
}

/* A binding row for extension "1" with Contact URI uri. */
static void
put_binding(struct t *t, const char *key, const char *uri, int64_t updated)
{
    struct store_binding sb = {.ext = "1",
                               .key = key,
                               .uri = uri,
                               .params = "",
                               .instance = "",
                               .call_id = "c",
                               .cseq = 1,
                               .expires_at = updated + 3600,
                               .updated_at = updated,
                               .path = "",
                               .source = "192.0.2.1:5060",
                               .user_agent = "UA"};
    assert_int_equal(store_binding_put(t->st, &sb), 0);
}

struct pn_seen {
    char prid[5][PUSHDEV_PRID_MAX + 1];
    char param[5][PUSHDEV_PARAM_MAX + 1];
    char provider[5][16];
    size_t n;
};

static void
on_pn(const char *ext, const char *display, bool enabled,
      const struct reg_contact *c, size_t count, void *arg)
{
    struct pn_seen *ps = arg;
    (void)ext;
    (void)display;
    (void)enabled;
    for (size_t i = 0; i < count && i < 5; i++) {
        snprintf(ps->prid[i], sizeof(ps->prid[i]), "%s", c[i].pn_prid);
        snprintf(ps->param[i], sizeof(ps->param[i]), "%s", c[i].pn_param);
        snprintf(ps->provider[i], sizeof(ps->provider[i]), "%s",
                 c[i].pn_provider);
    }
    ps->n = count;
}

/* The push params of a restored binding (reg_int.h struct reg_pn_ref: a
 * plain value is found inside the stored URI, an escaped one is kept
 * decoded): plain, escaped, absent, too long plain (""), too long only
 * before decoding (kept), and a decoded NUL (""), read through both
 * reg_lookup (copies in an arena) and reg_list_ext (borrowed). */
static void
test_restore_push_params(void **state)
{
    struct t *t = *state;
    int64_t now = t->now_ms / 1000;
    char uri[2048], longv[PUSHDEV_PRID_MAX + 2], esc[1024], want[300];
    struct store_ext se = {.number = "1",
                           .display = "",
                           .realm = REALM,
                           .ha1_md5 = "0123456789abcdef0123456789abcdef",
                           .ha1_sha256 = "0123456789abcdef0123456789abcdef"
                                         "0123456789abcdef0123456789abcdef",
                           .enabled = true,
                           .max_push_devices = 1};
    assert_int_equal(store_ext_put(t->st, &se), 0);

    /* Newest first: k = 0 is the newest. */
    put_binding(t, "k0",
                "sip:1@h;pn-provider=apns;pn-prid=ab12;pn-param=T.app.voip",
                now - 1);
    put_binding(t, "k1",
                "sip:1@h;pn-provider=%61pns;pn-prid=a%62%31%32;"
                "pn-param=T.app%2evoip;transport=udp",
                now - 2);
    put_binding(t, "k2", "sip:1@h;transport=udp", now - 3);
    memset(longv, 'a', sizeof(longv) - 1); /* PUSHDEV_PRID_MAX + 1 */
    longv[sizeof(longv) - 1] = '\0';
    snprintf(uri, sizeof(uri), "sip:1@h;pn-provider=fcm;pn-prid=%s;pn-param=p",
             longv);
    put_binding(t, "k3", uri, now - 4);
    /* PUSHDEV_PRID_MAX characters, 3 of them escaped (longer raw). */
    memset(want, 'b', PUSHDEV_PRID_MAX);
    want[PUSHDEV_PRID_MAX] = '\0';
    snprintf(esc, sizeof(esc), "%%62%%62%%62%s", want + 3);
    snprintf(uri, sizeof(uri),
             "sip:1@h;pn-provider=fcm;pn-prid=%s;pn-param=p%%00q", esc);
    put_binding(t, "k4", uri, now - 5);
    assert_int_equal(store_sync(t->st), 0);

    reg_free(t->r);
    start_reg(t);
    assert_int_equal(reg_load(t->r), 0);

    struct arena a;
    struct reg_contact *v;
    size_t n;
    arena_init(&a, 65536);
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("1"), &a, &v, &n), 0);
    assert_int_equal(n, 5);
    struct pn_seen ps = {0};
    assert_int_equal(reg_list_ext(t->r, "1", on_pn, &ps), 0);
    assert_int_equal(ps.n, 5);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(v[i].pn_provider, "apns");
        assert_string_equal(v[i].pn_prid, "ab12");
        assert_string_equal(v[i].pn_param, "T.app.voip");
        assert_string_equal(ps.provider[i], "apns");
        assert_string_equal(ps.prid[i], "ab12");
        assert_string_equal(ps.param[i], "T.app.voip");
    }
    assert_string_equal(v[2].pn_provider, "");
    assert_string_equal(v[2].pn_prid, "");
    assert_string_equal(v[2].pn_param, "");
    assert_string_equal(ps.prid[2], "");
    assert_string_equal(v[3].pn_provider, "fcm");
    assert_string_equal(v[3].pn_prid, ""); /* too long */
    assert_string_equal(v[3].pn_param, "p");
    assert_string_equal(ps.prid[3], "");
    assert_string_equal(v[4].pn_prid, want);
    assert_string_equal(ps.prid[4], want);
    assert_string_equal(v[4].pn_param, ""); /* decoded NUL */
    assert_string_equal(ps.param[4], "");
    /* The URI itself as stored. */
    assert_string_equal(v[1].uri, "sip:1@h;pn-provider=%61pns;pn-prid="
                                  "a%62%31%32;pn-param=T.app%2evoip;"
                                  "transport=udp");
    arena_fini(&a);
}

/* Bindings and extensions are restored at the same time (reg_load's two
 * threads): a binding whose extension row never comes is dropped, with
 * its row, and leaves no extension behind (in the tables, the counts or
 * the listing index). */
static void
test_restore_orphan_bindings(void **state)
{
    struct t *t = *state;
    int64_t now = t->now_ms / 1000;
    struct store_ext se = {.number = "1",
                           .display = "One",
                           .realm = REALM,
                           .ha1_md5 = "0123456789abcdef0123456789abcdef",
                           .ha1_sha256 = "0123456789abcdef0123456789abcdef"
                                         "0123456789abcdef0123456789abcdef",
                           .enabled = true,
                           .max_push_devices = 1};
    assert_int_equal(store_ext_put(t->st, &se), 0);
    put_binding(t, "k0", "sip:1@h", now);
    /* Orphans: of extension "2" (no row) and of an invalid number. */
    static const char *const orphans[] = {"2", "bad number!"};
    for (size_t i = 0; i < 2; i++) {
        struct store_binding sb = {.ext = orphans[i],
                                   .key = "o",
                                   .uri = "sip:o@h",
                                   .params = "",
                                   .instance = "",
                                   .call_id = "c",
                                   .cseq = 1,
                                   .expires_at = now + 3600,
                                   .updated_at = now,
                                   .path = "",
                                   .source = "192.0.2.1:5060",
                                   .user_agent = "UA"};
        assert_int_equal(store_binding_put(t->st, &sb), 0);
    }
    assert_int_equal(store_sync(t->st), 0);
    size_t rows = 0;
    assert_int_equal(store_count(t->st, "bindings", &rows), 0);
    assert_int_equal(rows, 3);

    reg_free(t->r);
    start_reg(t);
    assert_int_equal(reg_load(t->r), 0);
    struct reg_stats st;
    reg_get_stats(t->r, &st);
    assert_int_equal(st.extensions, 1);
    assert_int_equal(st.bindings, 1);
    struct arena a;
    struct reg_contact *v;
    size_t n;
    arena_init(&a, 4096);
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("2"), &a, &v, &n), -ENOENT);
    assert_int_equal(reg_lookup(t->r, SLICE_LIT("1"), &a, &v, &n), 0);
    assert_int_equal(n, 1);
    arena_fini(&a);
    struct reg_ext_info info;
    assert_int_equal(reg_ext_get(t->r, "1", &info), 0);
    assert_string_equal(info.display, "One");
    struct page p;
    struct reg_page pg;
    assert_int_equal(page(t, NULL, 10, &p, &pg), 1);
    assert_int_equal(pg.total, 1);
    assert_string_equal(p.num[0], "1");
    assert_int_equal(p.bindings[0], 1);
    /* The orphans' rows are gone from the database. */
    assert_int_equal(store_sync(t->st), 0);
    assert_int_equal(store_count(t->st, "bindings", &rows), 0);
    assert_int_equal(rows, 1);
}

/* Which extensions came from the configuration file: restored from the
 * store's source column, marked, counted, listed, and forgotten with
 * their extension (reg_ext_mark_config and friends). */
static void
test_config_marks(void **state)
{
    struct t *t = *state;
    static const char *const nums[] = {"10", "11", "12", "13"};

    for (size_t i = 0; i < 4; i++) {
        struct store_ext se = {.number = nums[i],
                               .display = "",
                               .realm = REALM,
                               .ha1_md5 = "0123456789abcdef0123456789abcdef",
                               .ha1_sha256 = "0123456789abcdef0123456789abcdef"
                                             "0123456789abcdef0123456789abcdef",
                               .enabled = true,
                               .max_push_devices = 1,
                               .source =
                                   i % 2 ? STORE_EXT_CONFIG : STORE_EXT_API};
        assert_int_equal(store_ext_put(t->st, &se), 0);
    }
    assert_int_equal(store_sync(t->st), 0);
    reg_free(t->r);
    start_reg(t);
    assert_int_equal(reg_load(t->r), 0);
    assert_int_equal(reg_ext_config_count(t->r), 2);
    assert_int_equal(reg_ext_is_config(t->r, "10"), 0);
    assert_int_equal(reg_ext_is_config(t->r, "11"), 1);
    assert_int_equal(reg_ext_is_config(t->r, "99"), -ENOENT);
    char(*v)[REG_NUMBER_LEN_MAX + 1];
    size_t n = reg_ext_config_list(t->r, &v);
    assert_int_equal(n, 2);
    assert_true((strcmp(v[0], "11") == 0 && strcmp(v[1], "13") == 0) ||
                (strcmp(v[0], "13") == 0 && strcmp(v[1], "11") == 0));
    free(v);

    assert_int_equal(reg_ext_mark_config(t->r, "10"), 0);
    assert_int_equal(reg_ext_mark_config(t->r, "10"), 0); /* once */
    assert_int_equal(reg_ext_mark_config(t->r, "99"), -ENOENT);
    assert_int_equal(reg_ext_config_count(t->r), 3);
    assert_int_equal(reg_ext_del(t->r, "11"), 0);
    assert_int_equal(reg_ext_config_count(t->r), 2);
    /* A new extension is the API's until marked. */
    add(t, "14");
    assert_int_equal(reg_ext_is_config(t->r, "14"), 0);
    n = reg_ext_config_list(t->r, &v);
    assert_int_equal(n, 2);
    free(v);
}

static int
setup_empty(void **state)
{
    *state = rh_setup(false);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_page_order_and_cursor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_page_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_changes_between_pages, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restore_many, setup_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restore_push_params, setup_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_config_marks, setup_empty,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_restore_orphan_bindings,
                                        setup_empty, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
