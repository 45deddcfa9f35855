/*
 * store_ckpt: WAL checkpoints off the writer's path (private to the store).
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL
 * past 1,000 pages, on the connection that committed: the store's writer.
 * Such a commit copies the WAL into the database and syncs it, for
 * milliseconds, and every write waiting for it waits too (a push REGISTER
 * parked until its device is committed: BENCHMARKS.md "push REGISTER p99").
 * Here the writer's automatic checkpoint is off; its WAL hook wakes a
 * thread of its own with its own connection, which runs PASSIVE
 * checkpoints (they never block the writer, nor wait for readers) whenever
 * the WAL has grown by STORE_CKPT_PAGES since the last request. A finished
 * checkpoint lets the writer's next transaction start the WAL file over,
 * so with the pauses of any real load the file stays a few MB.
 */
#ifndef PUSHPBX_STORE_STORE_CKPT_INT_H
#define PUSHPBX_STORE_STORE_CKPT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct store_ckpt;

/* WAL pages after which a checkpoint is asked for (SQLite's own default). */
#define STORE_CKPT_PAGES 1000
/* A WAL this long (PASSIVE checkpoints kept up, but the writer never
 * paused, so the WAL never started over) gets a RESTART checkpoint, which
 * the writer waits for: the file stays bounded (~64 MB at 4 KiB pages)
 * under any load. */
#define STORE_CKPT_MAX_PAGES 16000

/* Turn off writer_db's automatic checkpoint, hook its commits and start the
 * checkpoint thread (at nice value nice, [store] writer_nice) on a
 * connection of its own to path. 0 and *out, or a
 * negative errno with a reason in err (writer_db is left as it was).
 * On the writer's owner thread, before the writer starts. */
int store_ckpt_start(sqlite3 *writer_db, const char *path, unsigned nice,
                     struct store_ckpt **out, char *err, size_t errlen);
/* Stop the thread and close its connection, after the writer stopped and
 * before the writer's connection is closed (that last close checkpoints
 * the rest and removes the WAL file). NULL is a no-op. */
void store_ckpt_stop(struct store_ckpt *c);
/* Checkpoints run so far (PASSIVE ones that copied at least one frame).
 * Any thread. */
uint64_t store_ckpt_count(struct store_ckpt *c);

#endif
