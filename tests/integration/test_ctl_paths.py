"""pushpbxctl puts extension numbers into URL paths: an argument that is
not an extension number ("1018/prov", "100?x", "../x") must be refused
before any request, so it can never address another route (the issue:
`pushpbxctl ext del 1018/prov` revoked 1018's provisioning link)."""
from test_admin import admin_pbx
from test_ctl import ctl


def test_path_arguments_cannot_address_other_routes(start_pbx, tmp_path):
    pbx = admin_pbx(start_pbx, tmp_path)
    a = pbx.admin
    assert a.call("POST", "/api/extensions",
                  {"number": "1018", "password": "pw-1018-secret"})[0] == 201
    st, link = a.call("POST", "/api/extensions/1018/prov")
    assert st == 201, link

    bad = [("ext", "del", "1018/prov"),
           ("ext", "del", "1018/prov/"),
           ("ext", "passwd", "1018/../100"),
           ("ext", "del", "1018?x=1"),
           ("ext", "del", "1018#frag"),
           ("ext", "del", "1018%2Fprov"),
           ("ext", "del", "../extensions/1018"),
           ("prov", "revoke", "1018/"),
           ("push", "forget", "1018/prov/.."),
           ("push", "test", "1018 x"),
           ("ext", "del", "")]
    for args in bad:
        rc, out, err = ctl(pbx, *args)
        assert rc == 7, (args, rc, out, err)
        assert "is not an extension number" in err, (args, err)
    # nothing changed: the link, the extension and its password are there
    st, j = a.call("GET", "/api/extensions/1018/prov")
    assert st == 200 and j["url"] == link["url"], j
    assert a.call("GET", "/api/extensions/1018")[0] == 200
    assert a.call("GET", "/api/extensions/100")[0] == 200

    # valid numbers, with the characters the rule allows, still work
    rc, out, err = ctl(pbx, "ext", "add", "+49.30_1-2")
    assert rc == 0, err
    rc, out, err = ctl(pbx, "ext", "passwd", "+49.30_1-2")
    assert rc == 0 and "password" in out, err
    rc, out, err = ctl(pbx, "prov", "show", "+49.30_1-2")
    assert rc == 0 and "/prov/" in out, err
    rc, out, err = ctl(pbx, "prov", "revoke", "1018")
    assert rc == 0, err
    assert a.call("GET", "/api/extensions/1018/prov")[0] == 404
    rc, out, err = ctl(pbx, "ext", "del", "+49.30_1-2")
    assert rc == 0, err
    assert a.call("GET", "/api/extensions/+49.30_1-2")[0] == 404
