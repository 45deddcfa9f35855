"""[cluster] the admin side of a cluster on PostgreSQL (docs/cluster.md).

Nodes and helpers of test_cluster.py (a private PostgreSQL, A on
127.0.0.2, B on 127.0.0.3):

  - GET /api/registrations, on either node, names the node holding each
    binding, and `pushpbxctl reg list` shows it in its NODE column;
  - GET /api/nodes and `pushpbxctl nodes` on A show the calls up on B
    (each node's count is in its heartbeat row);
  - the backup is SQLite's: on PostgreSQL GET and POST /api/backup answer
    501 "the database is PostgreSQL: back it up with pg_dump",
    `pushpbxctl backup` says so and writes no file, and `pushpbx
    --restore` refuses with the same advice (pg_restore / psql).
"""
import json
import subprocess
import time

# Fixtures: pytest finds them in this module's namespace.
from pgfixture import pg_server  # noqa: F401
from test_cluster import TOKEN, cluster, held_by, ua_at, wait_for  # noqa: F401
from test_cluster import nodes
from test_calls import Call, Callee
from test_ctl import ctl
from conftest import BIN

PG_BACKUP = "the database is PostgreSQL: back it up with pg_dump"


def binding_nodes(p, ext):
    """[node of each binding of ext] in p's GET /api/registrations."""
    st, j = p.admin.call("GET", "/api/registrations")
    assert st == 200, j
    for e in j["items"]:
        if e["number"] == ext:
            return [b["node"] for b in e["bindings"]]
    return []


def test_registrations_name_the_holding_node(cluster):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    ua_b = ua_at(b, "100")
    ua_a = ua_at(a, "200")
    wait_for("A sees 100 held by B", held_by(a, "B"))
    wait_for("B sees 200 held by A", held_by(b, "A"))
    for p in (a, b):
        assert binding_nodes(p, "100") == ["B"]
        assert binding_nodes(p, "200") == ["A"]
    rc, out, err = ctl(a, "reg", "list", token=TOKEN)
    assert rc == 0, err
    head = out.splitlines()[0]
    assert " NODE " in head, out
    col = head.index(" NODE ") + 1  # a fixed-width column

    def node_of(ext):
        rows = [line for line in out.splitlines()
                if line.startswith(ext + " ")]
        assert len(rows) == 1, out
        return rows[0][col:].split()[0]
    assert node_of("100") == "B" and node_of("200") == "A", out
    rc, out, _ = ctl(b, "--json", "reg", "list", token=TOKEN)
    j = json.loads(out)
    got = {e["number"]: [x["node"] for x in e["bindings"]]
           for e in j["items"]}
    assert got["100"] == ["B"] and got["200"] == ["A"], got
    ua_a.close()
    ua_b.close()


def ctl_calls(p, node):
    """The CALLS column of node in `pushpbxctl nodes` on p."""
    rc, out, err = ctl(p, "nodes", token=TOKEN)
    assert rc == 0, err
    head = out.splitlines()[0]
    col = head.index("CALLS")
    for line in out.splitlines()[1:]:
        if line.split()[0] == node:
            return line[col:].split()[0]
    raise AssertionError(out)


def test_calls_on_b_shown_on_a(cluster):
    a = cluster.start("A", "127.0.0.2")
    b = cluster.start("B", "127.0.0.3")
    caller = ua_at(b, "100")
    callee = ua_at(b, "200")
    wait_for("A sees B up", lambda: nodes(a).get("B", {}).get("alive"))
    assert nodes(a)["B"]["calls"] == 0
    call = Call(caller, "200")  # a call on B alone, ringing
    assert call.invite() is None
    inv = callee.request("INVITE")
    cl = Callee(callee, inv)
    cl.reply(180)
    assert caller.response("INVITE").status == 180
    t0 = time.monotonic()
    wait_for("A's /api/nodes shows B's call",
             lambda: nodes(a)["B"]["calls"] == 1, timeout=5)
    print("a call ringing on B -> shown on A's /api/nodes: %.0f ms" %
          ((time.monotonic() - t0) * 1000))
    assert nodes(a)["A"]["calls"] == 0
    assert nodes(b)["B"]["calls"] == 1
    assert ctl_calls(a, "B") == "1" and ctl_calls(a, "A") == "0"
    # Answered: the call is set up, no longer counted (as on one node).
    call.answered(cl)
    wait_for("A's /api/nodes shows B's call set up",
             lambda: nodes(a)["B"]["calls"] == 0, timeout=5)
    call.hang_up(cl)
    caller.close()
    callee.close()


def test_backup_refused_on_postgresql(cluster, tmp_path):
    a = cluster.start("A", "127.0.0.2")
    for method in ("GET", "POST"):
        st, j = a.admin.call(method, "/api/backup")
        assert st == 501, (method, st, j)
        assert j["error"] == PG_BACKUP, j
    out_file = tmp_path / "backup.db"
    rc, out, err = ctl(a, "backup", str(out_file), token=TOKEN)
    assert rc != 0, out
    assert "HTTP 501: " + PG_BACKUP in err, err
    assert not out_file.exists()
    assert not (tmp_path / "backup.db.part").exists()
    # The restore of a SQLite backup into a PostgreSQL node: refused with
    # the advice, offline, before anything is touched.
    fake = tmp_path / "old.db"
    fake.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    r = subprocess.run([BIN, "--config", str(a.conf), "--restore",
                        str(fake)], cwd=str(a.dir), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the database is PostgreSQL: restore it with pg_restore" \
        in r.stderr, r.stderr
