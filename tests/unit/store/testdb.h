/*
 * testdb: the store unit tests run on either backend. With
 * PUSHPBX_TEST_PG set (tests/pg/pg-run sets it; ctest's unit/store_*_pg
 * entries run through it) the store under test is PostgreSQL, on a
 * database emptied for each test; otherwise the SQLite file the test
 * names. A test looks at the rows as another client would, through a
 * connection of its own (tdb_*), the same way on both.
 */
#ifndef PUSHPBX_TESTS_STORE_TESTDB_H
#define PUSHPBX_TESTS_STORE_TESTDB_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

/* A temporary directory for a test's SQLite file: dir becomes
 * "/tmp/pp-TAG-XXXXXX" (created; fails the test if it cannot be) and path
 * "DIR/t.db". The store tests' common set-up. */
void tdb_dir_make(char *dir, size_t dcap, char *path, size_t pcap,
                  const char *tag);
/* Remove path, its -wal and -shm files, then dir (left in place if
 * anything else is still in it). */
void tdb_dir_remove(const char *dir, const char *path);

/* The fixture most store tests share: a temporary directory (SQLite) or
 * the emptied PostgreSQL database, and a cfg for it. */
struct tdb_fixture {
    char dir[64];
    char path[128];
    struct store_cfg cfg;
};
/* A new fixture (tdb_dir_make with tag, tdb_cfg) whose cfg has flush_ms
 * and node; tdb_fixture_free removes what it made. */
struct tdb_fixture *tdb_fixture_new(const char *tag, unsigned flush_ms,
                                    const char *node);
void tdb_fixture_free(struct tdb_fixture *f);
/* store_open of f's cfg as node (fails the test with store_open's reason
 * when it cannot). */
struct store *tdb_fixture_open(const struct tdb_fixture *f, const char *node);

/* True when the tests run on PostgreSQL. */
bool tdb_pg(void);

/* Point cfg at the backend under test: PostgreSQL (every table dropped
 * first, so each test starts from an empty database) or the SQLite file
 * sqlite_path (cfg->path). Fails the test when the database cannot be
 * emptied. */
void tdb_cfg(struct store_cfg *cfg, const char *sqlite_path);

/* A connection of the test's own to cfg's database. */
struct tdb;
struct tdb *tdb_open(const struct store_cfg *cfg);
/* Run sql (one or more statements): 0, or -1 (the reason is printed). */
int tdb_exec(struct tdb *d, const char *sql);
/* The first column of sql's first row as an integer; -1 when none. */
long long tdb_int(struct tdb *d, const char *sql);
void tdb_close(struct tdb *d);

/* tdb_int on a connection opened and closed for the call. */
long long tdb_count(const struct store_cfg *cfg, const char *sql);

/* Begin a transaction that holds the write lock the store's writer needs
 * for extensions (SQLite: BEGIN IMMEDIATE; PostgreSQL: LOCK TABLE
 * extensions IN EXCLUSIVE MODE): the writer waits until tdb_exec(d,
 * "COMMIT"). 0 or -1. */
int tdb_lock_writes(struct tdb *d);

/* PostgreSQL only: stop / start the test's server (pg_ctl through
 * PUSHPBX_TEST_PG_CTL, tests/pg/pg-run). mode: "fast" or "immediate" (a
 * crash: no shutdown checkpoint). 0 or -1. */
int tdb_server_stop(const char *mode);
int tdb_server_start(void);

#endif
