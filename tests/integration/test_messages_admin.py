"""Stored chat messages on the admin API and /metrics ([messages], first
pass: the SIP side that stores a MESSAGE is the second pass, so these
tests put rows into the store's messages table with sqlite3 while the
daemon is stopped, the way a previous run would have left them).

- GET /api/messages lists per extension how many messages wait and the
  oldest's time, sorted by extension, and never their text or sender;
- a restart restores them (the index is loaded from the store) and drops
  the expired ones from memory and disk;
- /metrics has the messages families;
- deleting an extension through the API deletes its messages, also on
  disk (gone after a restart);
- the page's registrations table has a "Stored messages" column.
"""
import sqlite3
import time

from test_admin import ADMIN_CONFIG, TOKEN, Admin, parse_metrics


def start(start_pbx, tmp_path):
    extra = ADMIN_CONFIG.format(db=tmp_path / "m-reg.db", token=TOKEN,
                                prov=tmp_path / "m-prov.db",
                                admin_extra="")
    extra += "\n[extension.101]\nname = Bob\npassword = pw101-secret\n"
    pbx = start_pbx(workers=2, extra=extra)
    pbx.admin = Admin(pbx.info["admin_port"], TOKEN)
    return pbx


def seed(db, rows):
    con = sqlite3.connect(str(db))
    with con:
        con.executemany(
            "INSERT INTO messages(id, ext, sender_uri, sender_name, call_id,"
            " cseq, content_type, body, received_at, expires_at)"
            " VALUES(?,?,?,?,?,?,?,?,?,?)", rows)
    con.close()


def ids_in(db):
    con = sqlite3.connect(str(db))
    ids = [r[0] for r in con.execute("SELECT id FROM messages ORDER BY id")]
    con.close()
    return ids


def test_messages_listed_restored_and_deleted(start_pbx, tmp_path):
    db = tmp_path / "m-reg.db"
    pbx = start(start_pbx, tmp_path)
    st, body = pbx.admin.call("GET", "/api/messages")
    assert st == 200 and body["available"] is True
    assert body["items"] == [] and body["stats"]["waiting"] == 0
    pbx.check_clean_exit()

    now = int(time.time())
    week = 7 * 86400
    seed(db, [
        (1, "101", "sip:200@x", "Carol", "c1", 1, "text/plain",
         b"secret text one", now - 300, now - 300 + week),
        (2, "100", "sip:200@x", "Carol", "c1", 2, "text/plain",
         b"secret text two", now - 200, now - 200 + week),
        (3, "100", "sip:201@x", "Dave", "c2", 1, "text/plain",
         b"secret \xff three", now - 100, now - 100 + week),
        # Expired while the daemon was down: dropped at start.
        (4, "100", "sip:200@x", "Carol", "c1", 3, "text/plain",
         b"secret old", now - week - 10, now - 10),
    ])
    pbx = start(start_pbx, tmp_path)
    st, _, raw = pbx.admin.raw("GET", "/api/messages")
    assert st == 200
    assert b"secret" not in raw and b"Carol" not in raw
    assert b"sip:200" not in raw
    st, body = pbx.admin.call("GET", "/api/messages")
    assert [x["ext"] for x in body["items"]] == ["100", "101"]
    m100, m101 = body["items"]
    assert m100["count"] == 2 and m100["oldest_received_at"] == now - 200
    assert m100["bytes"] == len(b"secret text two") + len(b"secret \xff three")
    assert m101["count"] == 1 and m101["oldest_received_at"] == now - 300
    assert body["stats"]["waiting"] == 3

    st, _, text = pbx.admin.raw("GET", "/metrics")
    assert st == 200
    types, samples = parse_metrics(text.decode())
    assert types["pushpbx_messages_stored"] == "gauge"
    assert samples[("pushpbx_messages_stored", "")] == 3
    for name in ("stored", "delivered", "expired", "dropped", "pushed"):
        assert types["pushpbx_messages_%s_total" % name] == "counter"
    assert samples[("pushpbx_messages_delivered_total", "")] == 0

    # Deleting an API extension deletes its messages. 101 comes from the
    # file, so make an API one with a message of its own.
    st, _ = pbx.admin.call("POST", "/api/extensions",
                           {"number": "300", "password": "pw300-secret"})
    assert st == 201
    pbx.check_clean_exit()
    seed(db, [(5, "300", "sip:200@x", "Carol", "c3", 1, "text/plain", b"x",
               now, now + week)])
    pbx = start(start_pbx, tmp_path)
    st, body = pbx.admin.call("GET", "/api/messages")
    assert [x["ext"] for x in body["items"]] == ["100", "101", "300"]
    st, _ = pbx.admin.call("DELETE", "/api/extensions/300")
    assert st == 204
    st, body = pbx.admin.call("GET", "/api/messages")
    assert [x["ext"] for x in body["items"]] == ["100", "101"]
    pbx.check_clean_exit()
    # On disk: the expired row (4) and the deleted extension's (5) are gone.
    assert ids_in(db) == [1, 2, 3]


def test_page_has_stored_messages_column(start_pbx, tmp_path):
    pbx = start(start_pbx, tmp_path)
    st, _, html = pbx.admin.raw("GET", "/", token="")
    assert st == 200
    assert b"<th>Stored messages</th>" in html
    st, _, js = pbx.admin.raw("GET", "/app.js", token="")
    assert st == 200 and b"/api/messages" in js
