/*
 * Tests for config/cfg: loading INI files into option tables, errors with
 * FILE:LINE, pattern sections, --set overrides, the finish hook, and the
 * reference printer. Files are written to a temporary directory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/cfg.h"

/* A "room" with one of each type. */
struct t_main {
    char *name;
    char *alias;
    unsigned count;
    bool flag;
    int level;
    struct cfg_list addrs;
};

static const char *const levels[] = {"low", "mid", "high", NULL};

static const struct cfg_option main_opts[] = {
    {.key = "name",
     .type = CFG_STRING,
     .def = "box",
     .offset = offsetof(struct t_main, name),
     .help = "A name."},
    {.key = "alias",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct t_main, alias),
     .help = "Defaults to name."},
    {.key = "count",
     .type = CFG_UINT,
     .min = 1,
     .max = 64,
     .def = "8",
     .offset = offsetof(struct t_main, count),
     .help = "How many."},
    {.key = "flag",
     .type = CFG_BOOL,
     .def = "no",
     .offset = offsetof(struct t_main, flag),
     .help = "A switch."},
    {.key = "level",
     .type = CFG_ENUM,
     .def = "mid",
     .choices = levels,
     .offset = offsetof(struct t_main, level),
     .help = "A level."},
    {.key = "addrs",
     .type = CFG_LIST,
     .def = "a b",
     .offset = offsetof(struct t_main, addrs),
     .help = "Addresses."},
};

static int
main_finish(void *sec, char *err, size_t errlen)
{
    struct t_main *m = sec;

    if (m->alias[0] == '\0') {
        free(m->alias);
        m->alias = strdup(m->name);
    }
    if (m->flag && m->count > 32) {
        snprintf(err, errlen, "flag needs count <= 32");
        return -EINVAL;
    }
    return 0;
}

static const struct cfg_section main_sec = {
    .name = "main",
    .help = "The main section.",
    .options = main_opts,
    .option_count = sizeof(main_opts) / sizeof(main_opts[0]),
    .size = sizeof(struct t_main),
    .finish = main_finish,
};

struct t_ext {
    char *password;
    unsigned weight;
};

static const struct cfg_option ext_opts[] = {
    {.key = "password",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct t_ext, password),
     .help = "Secret."},
    {.key = "weight",
     .type = CFG_UINT,
     .min = 0,
     .max = 10,
     .def = "5",
     .offset = offsetof(struct t_ext, weight),
     .help = "Weight."},
};

static const struct cfg_section ext_sec = {
    .name = "ext.*",
    .help = "One per extension.",
    .options = ext_opts,
    .option_count = 2,
    .size = sizeof(struct t_ext),
};

static const struct cfg_section *const all[] = {&main_sec, &ext_sec};

static char tmpdir[] = "/tmp/cfg_test.XXXXXX";
static char path[512];

static void
write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Load text (NULL = no file) with sets; returns rc, error in err. */
static int
load(const char *text, const char *const *sets, size_t nsets, struct cfg **out,
     char *err, size_t errlen)
{
    if (text)
        write_file(text);
    return cfg_load(all, 2, text ? path : NULL, sets, nsets, out, err, errlen);
}

static void
expect_error(const char *text, const char *const *sets, size_t nsets,
             const char *want)
{
    struct cfg *c = NULL;
    char err[512];

    assert_int_equal(load(text, sets, nsets, &c, err, sizeof(err)), -EINVAL);
    assert_null(c);
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
}

static void
test_defaults(void **state)
{
    struct cfg *c = NULL;
    char err[256];

    assert_int_equal(load(NULL, NULL, 0, &c, err, sizeof(err)), 0);
    const struct t_main *m = cfg_get(c, &main_sec);
    assert_non_null(m);
    assert_string_equal(m->name, "box");
    assert_string_equal(m->alias, "box"); /* from finish */
    assert_int_equal(m->count, 8);
    assert_false(m->flag);
    assert_int_equal(m->level, 1);
    assert_int_equal(m->addrs.count, 2);
    assert_string_equal(m->addrs.items[1], "b");
    assert_int_equal(cfg_instance_count(c, &ext_sec), 0);
    assert_null(cfg_get(c, &ext_sec)); /* a pattern has no single struct */
    cfg_free(c);
    cfg_free(NULL);
}

static void
test_values(void **state)
{
    struct cfg *c = NULL;
    char err[256];
    int rc = load("; comment\n"
                  "# another\n"
                  "[main]\n"
                  "name = pbx one ; inline comment\n"
                  "count=32\n"
                  "flag = Yes\n"
                  "level = HIGH\n"
                  "addrs = x, y\n"
                  "   z\n"
                  "\n"
                  "[main]\n"
                  "alias = \" spaced \"\n",
                  NULL, 0, &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("load failed: %s", err);
    const struct t_main *m = cfg_get(c, &main_sec);
    assert_string_equal(m->name, "pbx one");
    assert_string_equal(m->alias, " spaced ");
    assert_int_equal(m->count, 32);
    assert_true(m->flag);
    assert_int_equal(m->level, 2);
    assert_int_equal(m->addrs.count, 3);
    assert_string_equal(m->addrs.items[0], "x");
    assert_string_equal(m->addrs.items[2], "z");
    cfg_free(c);
}

static void
test_errors_have_file_line(void **state)
{
    char want[600];

    snprintf(want, sizeof(want), "%s:3: unknown key 'nope' in [main]", path);
    expect_error("[main]\nname = a\nnope = 1\n", NULL, 0, want);
    snprintf(want, sizeof(want), "%s:2: unknown section [other]", path);
    expect_error("\n[other]\nx = 1\n", NULL, 0, want);
    snprintf(want, sizeof(want), "%s:2: [main] 'count': 65 out of range", path);
    expect_error("[main]\ncount = 65\n", NULL, 0, want);
    expect_error("[main]\ncount = 0\n", NULL, 0, ":2: [main] 'count': 0 out");
    expect_error("[main]\ncount = -1\n", NULL, 0, "not an unsigned number");
    expect_error("[main]\ncount = 99999999999999999999\n", NULL, 0,
                 "out of range");
    expect_error("[main]\nflag = maybe\n", NULL, 0, ":2: [main] 'flag'");
    expect_error("[main]\nlevel = max\n", NULL, 0,
                 "'max' is not one of: low mid high");
    expect_error("[main]\nname = a\n\nname = b\n", NULL, 0,
                 ":4: 'name' set twice in [main] (first on line 2)");
    expect_error("[main]\nname = a\n  b\n", NULL, 0,
                 ":3: 'name': continuation lines are only allowed");
    expect_error("x = 1\n", NULL, 0, ":1: key 'x' outside any [section]");
    snprintf(want, sizeof(want), "%s:3: syntax error", path);
    expect_error("[main]\nname = a\nthis line has no equals\n", NULL, 0, want);
    expect_error("[main\n", NULL, 0, ":1: syntax error");
    /* The first error wins, even when inih would report a later one. */
    expect_error("[main]\nbad = 1\n[broken\n", NULL, 0, ":2: unknown key");
    /* finish hook errors name the section. */
    expect_error("[main]\nflag = yes\ncount = 40\n", NULL, 0,
                 "[main] flag needs count <= 32");
}

static void
test_long_line(void **state)
{
    char text[1024];
    int n = snprintf(text, sizeof(text), "[main]\nname = ");
    memset(text + n, 'x', 600);
    memcpy(text + n + 600, "\n", 2);
    expect_error(text, NULL, 0, ":2: line too long");
}

static void
test_missing_file(void **state)
{
    struct cfg *c = NULL;
    char err[256];
    char p[600];

    snprintf(p, sizeof(p), "%s/does-not-exist.conf", tmpdir);
    assert_int_equal(cfg_load(all, 2, p, NULL, 0, &c, err, sizeof(err)),
                     -ENOENT);
    assert_null(c);
    assert_non_null(strstr(err, "does-not-exist.conf: cannot open"));
}

static void
test_pattern_sections(void **state)
{
    struct cfg *c = NULL;
    char err[256];
    const char *name = NULL;
    int rc = load("[ext.100]\npassword = one\n"
                  "[ext.200]\nweight = 9\n"
                  "[ext.100]\nweight = 1\n",
                  NULL, 0, &c, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(cfg_instance_count(c, &ext_sec), 2);
    const struct t_ext *e = cfg_instance(c, &ext_sec, 0, &name);
    assert_string_equal(name, "100");
    assert_string_equal(e->password, "one");
    assert_int_equal(e->weight, 1);
    e = cfg_instance(c, &ext_sec, 1, &name);
    assert_string_equal(name, "200");
    assert_string_equal(e->password, "");
    assert_int_equal(e->weight, 9);
    assert_null(cfg_instance(c, &ext_sec, 2, NULL));
    assert_ptr_equal(cfg_instance_find(c, &ext_sec, "200"), e);
    assert_null(cfg_instance_find(c, &ext_sec, "300"));
    assert_null(cfg_instance(c, &main_sec, 0, NULL));
    /* Each instance knows the line of its first [section] header. */
    const char *path = NULL;
    assert_int_equal(cfg_instance_origin(c, &ext_sec, 0, &path), 1);
    assert_non_null(path);
    assert_non_null(strstr(path, ".conf"));
    assert_int_equal(cfg_instance_origin(c, &ext_sec, 1, &path), 3);
    assert_int_equal(cfg_instance_origin(c, &ext_sec, 2, &path), 0);
    assert_null(path);
    cfg_free(c);
    /* An instance only --set made has no line. */
    const char *sets[] = {"ext.300.weight=2"};
    rc = load("[ext.100]\npassword = one\n", sets, 1, &c, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_int_equal(cfg_instance_origin(c, &ext_sec, 1, &path), 0);
    assert_null(path);
    cfg_free(c);
    /* "[ext.]" has no name: not a match. */
    expect_error("[ext.]\nweight = 1\n", NULL, 0, ":1: unknown section [ext.]");
    expect_error("[ext.1]\nweight = 11\n", NULL, 0,
                 ":2: [ext.1] 'weight': 11 out of range 0..10");
}

static void
test_set_overrides(void **state)
{
    struct cfg *c = NULL;
    char err[256];
    const char *sets[] = {"main.count=3", "ext.100.password=x=y",
                          "ext.new.weight=2", "main.count=4", "main.addrs=p q"};
    int rc = load("[main]\ncount = 10\n[ext.100]\npassword = file\n", sets, 5,
                  &c, err, sizeof(err));
    assert_int_equal(rc, 0);
    const struct t_main *m = cfg_get(c, &main_sec);
    assert_int_equal(m->count, 4); /* later --set wins over file and set */
    assert_int_equal(m->addrs.count, 2);
    assert_string_equal(m->addrs.items[0], "p");
    const struct t_ext *e = cfg_instance_find(c, &ext_sec, "100");
    assert_string_equal(e->password, "x=y"); /* split at the first '=' */
    e = cfg_instance_find(c, &ext_sec, "new");
    assert_non_null(e);
    assert_int_equal(e->weight, 2);
    cfg_free(c);

    /* --set alone, without a file. */
    const char *one[] = {"main.name=cli"};
    assert_int_equal(load(NULL, one, 1, &c, err, sizeof(err)), 0);
    assert_string_equal(((const struct t_main *)cfg_get(c, &main_sec))->name,
                        "cli");
    cfg_free(c);

    const char *bad1[] = {"main.count=100"};
    expect_error(NULL, bad1, 1, "--set main.count=100: 'count': 100 out");
    const char *bad2[] = {"nosuch.key=1"};
    expect_error(NULL, bad2, 1, "--set nosuch.key=1: unknown section");
    const char *bad3[] = {"main.nokey=1"};
    expect_error(NULL, bad3, 1, "--set main.nokey=1: unknown key 'nokey'");
    const char *bad4[] = {"novalue"};
    expect_error(NULL, bad4, 1, "--set novalue: expected section.key=value");
    const char *bad5[] = {"main=1"};
    expect_error(NULL, bad5, 1, "--set main=1: expected");
    const char *bad6[] = {"main.=1"};
    expect_error(NULL, bad6, 1, "--set main.=1: expected");
}

static void
test_help(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    cfg_print_help(f, all, 2, false);
    fclose(f);
    assert_non_null(strstr(text, "[main]\n"));
    assert_non_null(strstr(text, "  count = 8\n      (integer 1..64)\n"));
    assert_non_null(strstr(text, "(one of low, mid, high)"));
    assert_non_null(strstr(text, "[ext.*]\n"));
    free(text);

    f = open_memstream(&text, &len);
    cfg_print_help(f, all, 2, true);
    fclose(f);
    assert_non_null(strstr(text, "## [main]\n\nThe main section.\n"));
    assert_non_null(
        strstr(text, "| `count` | integer 1..64 | `8` | How many. |\n"));
    assert_non_null(strstr(text, "| `alias` | string | (empty) |"));
    free(text);
}

/* CFG_PATH: relative values (default, file, --set) resolve against the
 * base folder; absolute and empty ones stay; cfg_load resolves nothing. */
struct t_paths {
    char *db, *token, *abs, *empty;
};
static const struct cfg_option path_opts[] = {
    {.key = "db", .type = CFG_PATH, .def = "pushpbx.db",
     .offset = offsetof(struct t_paths, db), .help = "Database."},
    {.key = "token", .type = CFG_PATH, .def = "",
     .offset = offsetof(struct t_paths, token), .help = "Token."},
    {.key = "abs", .type = CFG_PATH, .def = "/etc/x.pem",
     .offset = offsetof(struct t_paths, abs), .help = "Absolute."},
    {.key = "empty", .type = CFG_PATH, .def = "",
     .offset = offsetof(struct t_paths, empty), .help = "Unset."},
};
static const struct cfg_section paths_sec = {
    .name = "paths",
    .help = "Files.",
    .options = path_opts,
    .option_count = sizeof(path_opts) / sizeof(path_opts[0]),
    .size = sizeof(struct t_paths),
};

static void
test_paths_resolve_against_base(void **state)
{
    const struct cfg_section *const secs[] = {&paths_sec};
    const char *sets[] = {"paths.token=var/admin.token"};
    struct cfg *c;
    char err[256];
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs("[paths]\nabs = /srv/cert.pem\n", f);
    fclose(f);
    assert_int_equal(cfg_load_in("/var/lib/pushpbx/", secs, 1, path, sets, 1,
                                 &c, err, sizeof(err)),
                     0);
    const struct t_paths *p = cfg_get(c, &paths_sec);
    assert_string_equal(p->db, "/var/lib/pushpbx/pushpbx.db");
    assert_string_equal(p->token, "/var/lib/pushpbx/var/admin.token");
    assert_string_equal(p->abs, "/srv/cert.pem");
    assert_string_equal(p->empty, "");
    cfg_free(c);

    assert_int_equal(cfg_load(secs, 1, path, sets, 1, &c, err, sizeof(err)), 0);
    p = cfg_get(c, &paths_sec);
    assert_string_equal(p->db, "pushpbx.db");
    assert_string_equal(p->token, "var/admin.token");
    cfg_free(c);
}

static int
setup(void **state)
{
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(path, sizeof(path), "%s/t.conf", tmpdir);
    return 0;
}

static int
teardown(void **state)
{
    unlink(path);
    rmdir(tmpdir);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors_have_file_line),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_pattern_sections),
        cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_paths_resolve_against_base),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
