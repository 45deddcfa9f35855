/*
 * app/app_journal: log lines to the systemd journal with structured fields.
 *
 * When pushpbx runs under systemd its stderr is already the journal, but as
 * a plain stream: every line gets the unit's priority and no fields. The
 * sink here sends each line with sd_journal_send instead:
 *   MESSAGE="room: text", PRIORITY (error 3, warn 4, notice 5, info 6,
 *   debug 7), SYSLOG_IDENTIFIER=pushpbx, PUSHPBX_ROOM=room, and
 *   PUSHPBX_CALL_ID / PUSHPBX_EXT taken from the line's call_id= and ext=
 *   words (the key=value convention of our log lines),
 * so `journalctl -u pushpbx PUSHPBX_EXT=100` finds one extension's lines.
 * Thread: called by log_write under its lock, from any thread.
 */
#ifndef PUSHPBX_APP_APP_JOURNAL_H
#define PUSHPBX_APP_APP_JOURNAL_H

#include <stdbool.h>

/* Install the journal sink when mode ([log] journal, enum app_log_journal)
 * asks for it: "yes" always, "auto" when $JOURNAL_STREAM names the device
 * and inode of our stderr (systemd's documented test), "no" never. Returns
 * true when the sink is installed. Call once, before any thread starts. */
bool app_journal_setup(int mode);

#endif
