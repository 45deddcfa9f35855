/*
 * store/store_schema: the one list of schema migrations of both backends
 * (store_int.h). A database records the migrations it ran in table
 * schema_version; store_open runs the missing ones in order.
 *
 * Version 1 is the schema as it was before the list existed: on SQLite
 * its statements are CREATE ... IF NOT EXISTS, so a file written by an
 * older pushpbx (tables there, no schema_version) passes through it
 * unchanged. Never edit a migration that has shipped: add one.
 */
#include <stddef.h>

#include "store/store_int.h"

const char *const store_source_name[2] = {
    [STORE_EXT_API] = "api",
    [STORE_EXT_CONFIG] = "config",
};

const struct store_migration store_migrations[] = {
    {.version = 1,
     .sqlite =
         "CREATE TABLE IF NOT EXISTS extensions("
         " number TEXT PRIMARY KEY, display TEXT NOT NULL, realm TEXT NOT NULL,"
         " ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,"
         " enabled INTEGER NOT NULL, max_push_devices INTEGER NOT NULL,"
         " source TEXT NOT NULL DEFAULT 'api');"
         "CREATE TABLE IF NOT EXISTS bindings("
         " ext TEXT NOT NULL, bkey TEXT NOT NULL, uri TEXT NOT NULL,"
         " params TEXT NOT NULL, instance TEXT NOT NULL,"
         " reg_id INTEGER NOT NULL,"
         " call_id TEXT NOT NULL, cseq INTEGER NOT NULL,"
         " expires_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
         " path TEXT NOT NULL, source TEXT NOT NULL,"
         " transport INTEGER NOT NULL,"
         " flow_id INTEGER NOT NULL, user_agent TEXT NOT NULL,"
         " PRIMARY KEY(ext, bkey));"
         /* Push devices: the same table (and file) the registrar wrote on
          * a connection of its own before the store owned it. */
         "CREATE TABLE IF NOT EXISTS push_devices("
         " provider TEXT NOT NULL, prid TEXT NOT NULL, ext TEXT NOT NULL,"
         " param TEXT NOT NULL, instance TEXT NOT NULL,"
         " created_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
         " PRIMARY KEY(provider, prid));"
         "CREATE INDEX IF NOT EXISTS push_devices_ext ON push_devices(ext);"
         "CREATE TABLE IF NOT EXISTS prov_links("
         " ext TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE,"
         " password TEXT NOT NULL, created_at INTEGER NOT NULL,"
         " expires_at INTEGER NOT NULL, fetches INTEGER NOT NULL,"
         " max_fetches INTEGER NOT NULL);"
         /* AUTOINCREMENT although the ids are ours: sqlite_sequence keeps
          * the highest id ever inserted (store_msg_last_id). */
         "CREATE TABLE IF NOT EXISTS messages("
         " id INTEGER PRIMARY KEY AUTOINCREMENT, ext TEXT NOT NULL,"
         " sender_uri TEXT NOT NULL, sender_name TEXT NOT NULL,"
         " call_id TEXT NOT NULL, cseq INTEGER NOT NULL,"
         " content_type TEXT NOT NULL, body BLOB NOT NULL,"
         " received_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);"
         "CREATE INDEX IF NOT EXISTS messages_ext ON messages(ext, id);"
         "CREATE INDEX IF NOT EXISTS messages_expires"
         " ON messages(expires_at);",
     /* bigint everywhere: cseq and the times do not fit an integer. */
     .pg =
         "CREATE TABLE extensions("
         " number text PRIMARY KEY, display text NOT NULL, realm text NOT NULL,"
         " ha1_md5 text NOT NULL, ha1_sha256 text NOT NULL,"
         " enabled bigint NOT NULL, max_push_devices bigint NOT NULL,"
         " source text NOT NULL DEFAULT 'api');"
         "CREATE TABLE bindings("
         " ext text NOT NULL, bkey text NOT NULL, uri text NOT NULL,"
         " params text NOT NULL, instance text NOT NULL,"
         " reg_id bigint NOT NULL,"
         " call_id text NOT NULL, cseq bigint NOT NULL,"
         " expires_at bigint NOT NULL, updated_at bigint NOT NULL,"
         " path text NOT NULL, source text NOT NULL, transport bigint NOT NULL,"
         " flow_id bigint NOT NULL, user_agent text NOT NULL,"
         " PRIMARY KEY(ext, bkey));"
         "CREATE TABLE push_devices("
         " provider text NOT NULL, prid text NOT NULL, ext text NOT NULL,"
         " param text NOT NULL, instance text NOT NULL,"
         " created_at bigint NOT NULL, last_seen bigint NOT NULL,"
         " PRIMARY KEY(provider, prid));"
         "CREATE INDEX push_devices_ext ON push_devices(ext);"
         "CREATE TABLE prov_links("
         " ext text PRIMARY KEY, token text NOT NULL UNIQUE,"
         " password text NOT NULL, created_at bigint NOT NULL,"
         " expires_at bigint NOT NULL, fetches bigint NOT NULL,"
         " max_fetches bigint NOT NULL);"
         /* The ids are ours; message_seq plays sqlite_sequence's part. */
         "CREATE TABLE messages("
         " id bigint PRIMARY KEY, ext text NOT NULL,"
         " sender_uri text NOT NULL, sender_name text NOT NULL,"
         " call_id text NOT NULL, cseq bigint NOT NULL,"
         " content_type text NOT NULL, body bytea NOT NULL,"
         " received_at bigint NOT NULL, expires_at bigint NOT NULL);"
         "CREATE INDEX messages_ext ON messages(ext, id);"
         "CREATE INDEX messages_expires ON messages(expires_at);"
         "CREATE TABLE message_seq(last_id bigint NOT NULL);"
         "INSERT INTO message_seq VALUES(0);"
         /* The change feed (store.h, store_watch): every row written that
          * belongs to an extension notifies 'ORIGIN EXT' at commit, in
          * the writing transaction. ORIGIN is the writer's session
          * setting pushpbx.node ("" for psql). PostgreSQL folds equal
          * notifications of one transaction into one. */
         "CREATE FUNCTION pushpbx_notify() RETURNS trigger"
         " LANGUAGE plpgsql AS $f$"
         " DECLARE o text := coalesce(current_setting('pushpbx.node', true),"
         " '');"
         " BEGIN"
         "  IF TG_OP <> 'INSERT' THEN"
         "   PERFORM pg_notify('pushpbx', o || ' ' || OLD.ext); END IF;"
         "  IF TG_OP <> 'DELETE' THEN"
         "   PERFORM pg_notify('pushpbx', o || ' ' || NEW.ext); END IF;"
         "  RETURN NULL;"
         " END $f$;"
         /* The same for extensions, whose column is number. */
         "CREATE FUNCTION pushpbx_notify_number() RETURNS trigger"
         " LANGUAGE plpgsql AS $f$"
         " DECLARE o text := coalesce(current_setting('pushpbx.node', true),"
         " '');"
         " BEGIN"
         "  IF TG_OP <> 'INSERT' THEN"
         "   PERFORM pg_notify('pushpbx', o || ' ' || OLD.number); END IF;"
         "  IF TG_OP <> 'DELETE' THEN"
         "   PERFORM pg_notify('pushpbx', o || ' ' || NEW.number); END IF;"
         "  RETURN NULL;"
         " END $f$;"
         "CREATE TRIGGER extensions_notify AFTER INSERT OR UPDATE OR DELETE"
         " ON extensions FOR EACH ROW EXECUTE FUNCTION pushpbx_notify_number();"
         "CREATE TRIGGER bindings_notify AFTER INSERT OR UPDATE OR DELETE"
         " ON bindings FOR EACH ROW EXECUTE FUNCTION pushpbx_notify();"
         "CREATE TRIGGER push_devices_notify AFTER INSERT OR UPDATE OR DELETE"
         " ON push_devices FOR EACH ROW EXECUTE FUNCTION pushpbx_notify();"
         "CREATE TRIGGER prov_links_notify AFTER INSERT OR UPDATE OR DELETE"
         " ON prov_links FOR EACH ROW EXECUTE FUNCTION pushpbx_notify();"
         "CREATE TRIGGER messages_notify AFTER INSERT OR UPDATE OR DELETE"
         " ON messages FOR EACH ROW EXECUTE FUNCTION pushpbx_notify();"},
    /* Cluster: the node holding each binding, and the nodes' heartbeats. */
    {.version = 2,
     .sqlite = "ALTER TABLE bindings ADD COLUMN node TEXT NOT NULL"
               " DEFAULT '';"
               "CREATE TABLE nodes(name TEXT PRIMARY KEY,"
               " advertise TEXT NOT NULL, started_at INTEGER NOT NULL,"
               " last_seen INTEGER NOT NULL);",
     .pg = "ALTER TABLE bindings ADD COLUMN node text NOT NULL DEFAULT '';"
           "CREATE TABLE nodes(name text PRIMARY KEY,"
           " advertise text NOT NULL, started_at bigint NOT NULL,"
           " last_seen bigint NOT NULL);"},
    /* Cluster: message ids from one sequence for every node, handed out
     * in blocks of STORE_MSG_ID_BLOCK (store_msg_id_block), above every
     * id used before. SQLite (one node) numbers on as before. */
    {.version = 3,
     .sqlite = NULL,
     .pg = "CREATE SEQUENCE message_ids INCREMENT BY 1000 MINVALUE 1;"
           "DO $d$ BEGIN PERFORM setval('message_ids',"
           " greatest((SELECT max(last_id) FROM message_seq),"
           " (SELECT coalesce(max(id), 0) FROM messages)) + 1, false);"
           " END $d$;"},
    /* Call records (docs/calls.md): every node's finished calls, bounded
     * per node by [proxy] call_records (store_call_put's cap, by id within
     * a node), listed newest first by end time. The key (node, call_id,
     * started_ms) makes a put an upsert: the media figures that come
     * later, and a batch sent again after a lost answer, replace the row. */
    {.version = 4,
     .sqlite = "CREATE TABLE call_records("
               " id INTEGER PRIMARY KEY, node TEXT NOT NULL,"
               " call_id TEXT NOT NULL, caller TEXT NOT NULL,"
               " callee TEXT NOT NULL, outcome TEXT NOT NULL,"
               " status INTEGER NOT NULL, answered_by TEXT NOT NULL,"
               " branches INTEGER NOT NULL, started_ms INTEGER NOT NULL,"
               " ringing_ms INTEGER NOT NULL, ended_ms INTEGER NOT NULL,"
               " media INTEGER NOT NULL,"
               " caller_packets INTEGER NOT NULL,"
               " caller_bytes INTEGER NOT NULL, caller_lost INTEGER NOT NULL,"
               " caller_jitter INTEGER NOT NULL,"
               " callee_packets INTEGER NOT NULL,"
               " callee_bytes INTEGER NOT NULL, callee_lost INTEGER NOT NULL,"
               " callee_jitter INTEGER NOT NULL);"
               "CREATE UNIQUE INDEX call_records_key"
               " ON call_records(node, call_id, started_ms);"
               "CREATE INDEX call_records_node ON call_records(node, id);"
               "CREATE INDEX call_records_ended"
               " ON call_records(ended_ms, id);",
     .pg = "CREATE TABLE call_records("
           " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
           " node text NOT NULL, call_id text NOT NULL, caller text NOT NULL,"
           " callee text NOT NULL, outcome text NOT NULL,"
           " status bigint NOT NULL, answered_by text NOT NULL,"
           " branches bigint NOT NULL, started_ms bigint NOT NULL,"
           " ringing_ms bigint NOT NULL, ended_ms bigint NOT NULL,"
           " media bigint NOT NULL, caller_packets bigint NOT NULL,"
           " caller_bytes bigint NOT NULL, caller_lost bigint NOT NULL,"
           " caller_jitter bigint NOT NULL, callee_packets bigint NOT NULL,"
           " callee_bytes bigint NOT NULL, callee_lost bigint NOT NULL,"
           " callee_jitter bigint NOT NULL);"
           "CREATE UNIQUE INDEX call_records_key"
           " ON call_records(node, call_id, started_ms);"
           "CREATE INDEX call_records_node ON call_records(node, id);"
           "CREATE INDEX call_records_ended ON call_records(ended_ms, id);"},
    /* Cluster: each node's current calls in its heartbeat row (the
     * admin's node list shows every node's, docs/cluster.md). */
    {.version = 5,
     .sqlite = "ALTER TABLE nodes ADD COLUMN calls INTEGER NOT NULL"
               " DEFAULT 0;",
     .pg = "ALTER TABLE nodes ADD COLUMN calls bigint NOT NULL DEFAULT 0;"},
    /* Cluster: silent refreshes. A REGISTER refresh rewrites its binding
     * row (expires_at, updated_at, cseq...) and, through version 1's
     * trigger, notified the extension, so every other node read it back
     * (store_ext_read): ~4 statements per registration on two nodes
     * instead of 1. Other nodes route on the row's key, uri, params (push
     * parameters), instance, reg_id and node only (they replace source,
     * transport and flow_id by the holding node's address, cluster.c
     * route_rows); an update that changes none of those is silent. An
     * insert and a delete always notify: the holding node deletes the row
     * when the binding expires there (reg_expire), and the other nodes keep
     * a remote binding until then, whatever its expiry as last read
     * (reg_remote_set; or until its node stops beating). SQLite (one node)
     * has no triggers. */
    {.version = 6,
     .sqlite = NULL,
     .pg = "DROP TRIGGER bindings_notify ON bindings;"
           "CREATE TRIGGER bindings_notify AFTER INSERT OR DELETE"
           " ON bindings FOR EACH ROW EXECUTE FUNCTION pushpbx_notify();"
           "CREATE TRIGGER bindings_notify_route AFTER UPDATE ON bindings"
           " FOR EACH ROW WHEN ((OLD.ext, OLD.bkey, OLD.uri, OLD.params,"
           " OLD.instance, OLD.reg_id, OLD.node) IS DISTINCT FROM"
           " (NEW.ext, NEW.bkey, NEW.uri, NEW.params, NEW.instance,"
           " NEW.reg_id, NEW.node))"
           " EXECUTE FUNCTION pushpbx_notify();"},
    /* Stored messages in arrival order across nodes (docs/messages.md
     * "Order"): the arrival time in microseconds, set by the storing node
     * (store_msg.received_us); one extension's messages are loaded,
     * capped and delivered by (received_us, id). Rows written before get
     * their second (received_at * 1000000): among themselves they stay in
     * id order, the order one node received them in. */
    {.version = 7,
     .sqlite = "ALTER TABLE messages ADD COLUMN received_us INTEGER NOT NULL"
               " DEFAULT 0;"
               "UPDATE messages SET received_us = received_at * 1000000;"
               "DROP INDEX IF EXISTS messages_ext;"
               "CREATE INDEX messages_ext ON messages(ext, received_us, id);",
     /* The default is for a node still running an older pushpbx while
      * the others are upgraded: its inserts name no received_us and get
      * the server's clock. */
     .pg = "ALTER TABLE messages ADD COLUMN received_us bigint NOT NULL"
           " DEFAULT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;"
           "UPDATE messages SET received_us = received_at * 1000000;"
           "DROP INDEX IF EXISTS messages_ext;"
           "CREATE INDEX messages_ext ON messages(ext, received_us, id);"},
};

_Static_assert(STORE_MSG_ID_BLOCK == 1000,
               "migration 3's INCREMENT BY is STORE_MSG_ID_BLOCK");

const size_t store_migration_count =
    sizeof(store_migrations) / sizeof(store_migrations[0]);

_Static_assert(sizeof(store_migrations) / sizeof(store_migrations[0]) ==
                   STORE_SCHEMA_VERSION,
               "STORE_SCHEMA_VERSION is the last migration");
