"""GET /api/registrations by pages (docs/admin.md "Pages") and pushpbxctl
reg list paging through them, against the real daemon with 250
extensions from the configuration file (1..250)."""
import json

from test_admin import admin_pbx
from test_ctl import ctl

N = 250


def many_pbx(start_pbx, tmp_path):
    # Extension 100 is in ADMIN_CONFIG; the others follow [admin] here.
    extra = "".join("\n[extension.%d]\npassword = pw%d-secret\n" % (i, i)
                    for i in range(1, N + 1) if i != 100)
    return admin_pbx(start_pbx, tmp_path, admin_extra=extra)


def numbers(j):
    return [e["number"] for e in j["items"]]


def test_pages_order_cursor_and_bounds(start_pbx, tmp_path):
    pbx = many_pbx(start_pbx, tmp_path)
    a = pbx.admin
    # Default limit 100, listing order (numeric: 2 before 10).
    st, j = a.call("GET", "/api/registrations")
    assert st == 200, j
    assert numbers(j) == [str(i) for i in range(1, 101)]
    assert j["total"] == N and j["limit"] == 100 and j["next"] == "100"
    assert j["push_available"] is True
    st, j = a.call("GET", "/api/registrations?limit=100&after=100")
    assert numbers(j) == [str(i) for i in range(101, 201)]
    st, j = a.call("GET", "/api/registrations?limit=100&after=" + j["next"])
    assert numbers(j) == [str(i) for i in range(201, N + 1)]
    assert j["next"] is None
    # Limits 1 and 1000; a cursor that is no extension; empty pages.
    st, j = a.call("GET", "/api/registrations?limit=1")
    assert numbers(j) == ["1"] and j["next"] == "1"
    st, j = a.call("GET", "/api/registrations?limit=1000")
    assert len(j["items"]) == N and j["next"] is None
    st, j = a.call("GET", "/api/registrations?after=0999&limit=5")
    assert st == 200 and j["items"] == [] and j["next"] is None
    st, j = a.call("GET", "/api/registrations?after=0a&limit=2")
    assert numbers(j) == ["10", "11"]
    st, j = a.call("GET", "/api/registrations?after=%d" % N)
    assert st == 200 and j["items"] == [] and j["next"] is None
    assert j["total"] == N
    # Bad parameters: 400 naming the field.
    for q, field in (("limit=0", "limit"), ("limit=1001", "limit"),
                     ("limit=-1", "limit"), ("limit=ten", "limit"),
                     ("limit=", "limit"), ("after=no%20such", "after"),
                     ("after=" + "9" * 33, "after")):
        st, j = a.call("GET", "/api/registrations?" + q)
        assert st == 400, q
        assert j["field"] == field, q
    # One extension's route.
    st, j = a.call("GET", "/api/extensions/7/registrations")
    assert st == 200 and numbers(j) == ["7"]
    st, j = a.call("GET", "/api/extensions/7777/registrations")
    assert st == 404


def test_extensions_added_and_removed_between_pages(start_pbx, tmp_path):
    pbx = many_pbx(start_pbx, tmp_path)
    a = pbx.admin
    st, j = a.call("GET", "/api/registrations?limit=100")
    cursor = j["next"]
    assert cursor == "100"
    # Behind the cursor ("0"): not seen again; ahead ("1500", last in
    # listing order): seen; one added ahead and deleted again ("180x"):
    # not seen.
    for num in ("0", "1500", "180x"):
        st, _ = a.call("POST", "/api/extensions",
                       {"number": num, "password": "pw-%s-secret" % num})
        assert st == 201
    st, _ = a.call("DELETE", "/api/extensions/180x")
    assert st == 204
    seen = []
    while cursor:
        st, j = a.call("GET", "/api/registrations?limit=60&after=" + cursor)
        assert st == 200
        seen += numbers(j)
        cursor = j["next"]
    assert seen == [str(i) for i in range(101, N + 1)] + ["1500"]
    assert j["total"] == N + 2


def test_ctl_reg_list_pages_through_all(start_pbx, tmp_path):
    pbx = many_pbx(start_pbx, tmp_path)
    rc, out, err = ctl(pbx, "reg", "list")
    assert rc == 0, err
    rows = [l.split()[0] for l in out.splitlines()[1:] if l.strip()]
    assert rows == [str(i) for i in range(1, N + 1)]
    rc, out, err = ctl(pbx, "--json", "reg", "list")
    assert rc == 0, err
    j = json.loads(out)
    assert [e["number"] for e in j["items"]] == [str(i)
                                                 for i in range(1, N + 1)]
    assert j["total"] == N
    rc, out, err = ctl(pbx, "reg", "list", "--limit", "10", "--after", "20")
    assert rc == 0, err
    lines = out.splitlines()
    assert [l.split()[0] for l in lines[1:11]] == [str(i)
                                                    for i in range(21, 31)]
    assert lines[-1] == "(more: reg list --limit 10 --after 30)"
    rc, _, _ = ctl(pbx, "reg", "list", "--limit", "0")
    assert rc == 2
