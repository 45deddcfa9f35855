/*
 * testdb: see testdb.h. SQLite through sqlite3, PostgreSQL through libpq.
 */
#include "testdb.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

struct tdb {
    sqlite3 *db;
    PGconn *pg;
};

bool
tdb_pg(void)
{
    const char *e = getenv("PUSHPBX_TEST_PG");
    return e && e[0];
}

void
tdb_cfg(struct store_cfg *cfg, const char *sqlite_path)
{
    cfg->path = (char *)sqlite_path;
    if (!tdb_pg()) {
        cfg->backend = "sqlite";
        cfg->postgresql = "";
        return;
    }
    cfg->backend = "postgresql";
    cfg->postgresql = getenv("PUSHPBX_TEST_PG");
    struct tdb *d = tdb_open(cfg);
    assert_int_equal(tdb_exec(d, "SET client_min_messages = warning;"
                                 "DROP SCHEMA public CASCADE;"
                                 "CREATE SCHEMA public;"),
                     0);
    tdb_close(d);
}

struct tdb *
tdb_open(const struct store_cfg *cfg)
{
    struct tdb *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    if (cfg->backend && strcmp(cfg->backend, "postgresql") == 0) {
        d->pg = PQconnectdb(cfg->postgresql);
        if (PQstatus(d->pg) != CONNECTION_OK)
            fail_msg("tdb: connect: %s", PQerrorMessage(d->pg));
    } else {
        assert_int_equal(sqlite3_open(cfg->path, &d->db), SQLITE_OK);
        sqlite3_busy_timeout(d->db, 5000);
    }
    return d;
}

int
tdb_exec(struct tdb *d, const char *sql)
{
    if (d->pg) {
        PGresult *r = PQexec(d->pg, sql);
        ExecStatusType s = PQresultStatus(r);
        int rc = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? 0 : -1;
        if (rc < 0)
            print_message("tdb: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        return rc;
    }
    char *msg = NULL;
    if (sqlite3_exec(d->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        print_message("tdb: %s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

long long
tdb_int(struct tdb *d, const char *sql)
{
    long long n = -1;

    if (d->pg) {
        PGresult *r = PQexec(d->pg, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
            !PQgetisnull(r, 0, 0))
            n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else if (PQresultStatus(r) != PGRES_TUPLES_OK)
            print_message("tdb: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        return n;
    }
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW &&
        sqlite3_column_type(q, 0) != SQLITE_NULL)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

void
tdb_close(struct tdb *d)
{
    if (!d)
        return;
    PQfinish(d->pg);
    sqlite3_close(d->db);
    free(d);
}

long long
tdb_count(const struct store_cfg *cfg, const char *sql)
{
    struct tdb *d = tdb_open(cfg);
    long long n = tdb_int(d, sql);
    tdb_close(d);
    return n;
}

int
tdb_lock_writes(struct tdb *d)
{
    if (d->pg)
        return tdb_exec(d, "BEGIN; LOCK TABLE extensions IN EXCLUSIVE MODE");
    return tdb_exec(d, "BEGIN IMMEDIATE");
}

static int
pg_ctl(const char *args)
{
    const char *ctl = getenv("PUSHPBX_TEST_PG_CTL");
    char cmd[1024];

    if (!ctl || !ctl[0]) {
        print_message("tdb: PUSHPBX_TEST_PG_CTL not set (run through "
                      "tests/pg/pg-run)\n");
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "%s %s >/dev/null", ctl, args);
    return system(cmd) == 0 ? 0 : -1;
}

int
tdb_server_stop(const char *mode)
{
    char args[64];
    snprintf(args, sizeof(args), "-m %s -w stop", mode);
    return pg_ctl(args);
}

int
tdb_server_start(void)
{
    return pg_ctl("-w -t 30 start");
}

void
tdb_dir_make(char *dir, size_t dcap, char *path, size_t pcap, const char *tag)
{
    snprintf(dir, dcap, "/tmp/pp-%s-XXXXXX", tag);
    if (!mkdtemp(dir))
        fail_msg("mkdtemp %s: %s", dir, strerror(errno));
    snprintf(path, pcap, "%s/t.db", dir);
}

void
tdb_dir_remove(const char *dir, const char *path)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    char p[512];

    for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
        unlink(p);
    }
    rmdir(dir);
}

struct tdb_fixture *
tdb_fixture_new(const char *tag, unsigned flush_ms, const char *node)
{
    struct tdb_fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        fail_msg("out of memory");
    tdb_dir_make(f->dir, sizeof(f->dir), f->path, sizeof(f->path), tag);
    f->cfg = (struct store_cfg){.path = f->path,
                                .flush_ms = flush_ms,
                                .max_queue = 100000,
                                .node = (char *)node};
    tdb_cfg(&f->cfg, f->path);
    return f;
}

void
tdb_fixture_free(struct tdb_fixture *f)
{
    if (f == NULL)
        return;
    tdb_dir_remove(f->dir, f->path);
    free(f);
}

struct store *
tdb_fixture_open(const struct tdb_fixture *f, const char *node)
{
    struct store *st = NULL;
    char err[512];
    struct store_cfg c = f->cfg;

    c.node = (char *)node;
    if (store_open(&c, &st, err, sizeof(err)) != 0)
        fail_msg("store_open: %s", err);
    return st;
}
