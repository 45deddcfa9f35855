"""Each rule of scripts/check-source fed a file that breaks it.

Every case builds a small tree in a temporary folder (a clean copy of the
room layout), adds one violating file, runs check-source on it and expects
exit 1 with the reason; the clean tree must pass, so a rule that stopped
firing, or one that fires on everything, both fail here.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(ROOT, "scripts", "check-source")

HEADER = "/* test file */\n"


def write(tree, rel, text):
    path = os.path.join(tree, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(HEADER + text)


@pytest.fixture
def tree(tmp_path):
    t = str(tmp_path)
    write(t, "src/base/slice.h", "int slice_x;\n")
    write(t, "src/sip/msg.h", '#include "base/slice.h"\n')
    write(t, "src/sip/sip_int.h", "int sip_private;\n")
    write(t, "src/store/store.c", "#include <sqlite3.h>\n#include \"sip/msg.h\"\n")
    write(t, "src/store/store_pg.c", "#include <libpq-fe.h>\n")
    write(t, "src/proxy/proxy.h", "int proxy_x;\n")
    write(t, "src/proxy/proxy_int.h", "int proxy_private;\n")
    write(t, "src/proxy/proxy.c",
          '#include "proxy_int.h"\n#include "proxy/proxy.h"\n#include <uv.h>\n')
    write(t, "src/push/client.c", "#include <curl/curl.h>\n")
    write(t, "src/push/push.h", "int push_x;\n")
    write(t, "src/cluster/cluster.h", '#include "registrar/reg.h"\n')
    write(t, "src/registrar/reg.h", '#include "store/store.h"\n')
    write(t, "src/wake/wake.h", '#include "proxy/proxy.h"\n')
    write(t, "src/wake/wake.c", '#include "wake/wake.h"\n#include <uv.h>\n')
    write(t, "src/admin/admin.c", "#include <microhttpd.h>\n#include \"proxy/proxy.h\"\n")
    write(t, "src/registrar/pushdev.c", '#include "store/store.h"\n')
    write(t, "src/store/store.h", "int store_x;\n")
    write(t, "src/ctl/ctl.c", '#include "base/slice.h"\n#include <curl/curl.h>\n')
    write(t, "src/pushsim/h2.c", "#include <nghttp2/nghttp2.h>\n")
    write(t, "src/app/main.c", '#include "proxy/proxy.h"\n#include "admin/admin.h"\n')
    write(t, "src/admin/admin.h", "int admin_x;\n")
    write(t, "tests/unit/proxy/proxy_test.c",
          '#include "proxy/proxy_int.h"\n#include "sip/msg.h"\n')
    write(t, "tests/unit/store/store_test.c", "#include <sqlite3.h>\n")
    write(t, "tests/fuzz/fuzz_msg.c", '#include "sip/msg.h"\n')
    write(t, "bench/bench.c", '#include "proxy/proxy.h"\n')
    return t


def run(tree):
    r = subprocess.run([sys.executable, SCRIPT, tree], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stdout


def test_clean_tree_passes(tree):
    rc, out = run(tree)
    assert rc == 0, out


@pytest.mark.parametrize("rel,text,reason", [
    # rule 1: edges, resolved; '..' refused
    ("src/sip/bad.c", '#include "proxy/proxy.h"\n', "may not include 'proxy/'"),
    ("src/sip/bad.c", '#include "../proxy/proxy.h"\n', "escapes with '..'"),
    # resolved, not read as text: "./proxy/..." lands in proxy all the same
    ("src/sip/bad.c", '#include "./proxy/proxy.h"\n', "may not include 'proxy/'"),
    ("src/base/bad.c", '#include "sip/msg.h"\n', "may not include 'sip/'"),
    # wake observes the proxy; the proxy never knows wake
    ("src/proxy/bad.c", '#include "wake/wake.h"\n', "may not include 'wake/'"),
    # cluster sits on the registrar and the store; it reaches the proxy
    # only through app's wiring, and nothing below it knows it
    ("src/cluster/bad.c", '#include "proxy/proxy.h"\n',
     "'cluster' may not include 'proxy/'"),
    ("src/registrar/bad.c", '#include "cluster/cluster.h"\n',
     "'registrar' may not include 'cluster/'"),
    # rule 2: _int.h is private
    ("src/admin/bad.c", '#include "proxy/proxy_int.h"\n', "private to room 'proxy'"),
    ("tests/unit/admin/bad_test.c", '#include "proxy/proxy_int.h"\n',
     "private to room 'proxy'"),
    ("bench/bad.c", '#include "proxy/proxy_int.h"\n', "private to room 'proxy'"),
    ("src/app/bad.c", '#include "proxy/proxy_int.h"\n', "private to room 'proxy'"),
    # rule 3: library headers
    ("src/sip/bad.c", "#include <sqlite3.h>\n", "<sqlite3.h> is not for 'sip'"),
    ("src/proxy/bad.c", "#include <sqlite3.h>\n", "<sqlite3.h> is not for 'proxy'"),
    # the store owns every SQLite connection: no exception for these two
    ("src/registrar/pushdev.c", "#include <sqlite3.h>\n",
     "<sqlite3.h> is not for 'registrar'"),
    ("src/admin/admin_prov.c", "#include <sqlite3.h>\n",
     "<sqlite3.h> is not for 'admin'"),
    # PostgreSQL too: the store owns every connection (docs/store.md)
    ("src/registrar/bad.c", "#include <libpq-fe.h>\n",
     "<libpq-fe.h> is not for 'registrar'"),
    ("src/admin/bad.c", "#include <libpq-fe.h>\n",
     "<libpq-fe.h> is not for 'admin'"),
    ("bench/bad.c", "#include <libpq-fe.h>\n", "<libpq-fe.h> is not for 'bench'"),
    ("src/admin/bad.c", "#include <curl/curl.h>\n", "<curl/curl.h> is not for 'admin'"),
    ("src/proxy/bad.c", "#include <microhttpd.h>\n", "<microhttpd.h> is not for 'proxy'"),
    ("src/base/bad.c", "#include <uv.h>\n", "<uv.h> is not for 'base'"),
    ("src/sip/bad.c", "#include <uv.h>\n", "<uv.h> is not for 'sip'"),
    ("src/config/bad.c", "#include <uv.h>\n", "<uv.h> is not for 'config'"),
    # the cluster reads other nodes' changes through the store, never libpq
    ("src/cluster/bad.c", "#include <libpq-fe.h>\n",
     "<libpq-fe.h> is not for 'cluster'"),
    ("src/wake/bad.c", "#include <curl/curl.h>\n", "<curl/curl.h> is not for 'wake'"),
    ("src/app/bad.c", "#include <sqlite3.h>\n", "<sqlite3.h> is not for 'app'"),
    ("src/push/bad.c", "#include <nghttp2/nghttp2.h>\n", "is not for 'push'"),
    # rule 4: programs
    ("src/ctl/bad.c", '#include "wake/wake.h"\n', "'ctl' may not include 'wake/'"),
    ("src/ctl/bad.c", "#include <sqlite3.h>\n", "<sqlite3.h> is not for 'ctl'"),
    ("src/ctl/bad.c", "#include <microhttpd.h>\n", "<microhttpd.h> is not for 'ctl'"),
    ("src/ctl/bad.c", '#include "proxy/proxy.h"\n', "'ctl' may not include 'proxy/'"),
    ("src/pushsim/bad.c", '#include "proxy/proxy.h"\n',
     "'pushsim' may not include 'proxy/'"),
    # pushsim signs with jose, never with the push room's code
    ("src/pushsim/bad.c", '#include "push/push.h"\n',
     "'pushsim' may not include 'push/'"),
    ("src/pushsim/bad.c", "#include <sqlite3.h>\n", "<sqlite3.h> is not for 'pushsim'"),
    # rule 5: tests and bench
    ("tests/unit/sip/bad_test.c", '#include "proxy/proxy.h"\n',
     "'sip' may not include 'proxy/'"),
    ("tests/unit/sip/bad_test.c", "#include <sqlite3.h>\n", "is not for 'sip'"),
    ("tests/fuzz/fuzz_bad.c", '#include "proxy/proxy.h"\n',
     "fuzz targets may not include 'proxy/'"),
    ("tests/fuzz/fuzz_bad.c", "#include <uv.h>\n", "<uv.h> is not for 'fuzz'"),
    ("bench/bad.c", "#include <sqlite3.h>\n", "<sqlite3.h> is not for 'bench'"),
    ("tests/unit/proxy/bad_test.c", '#include "../registrar/harness.h"\n',
     "escapes with '..'"),
    # rule 6: banned functions, also in tests
    ("src/sip/bad.c", "void f(char *d){ strcpy(d, \"x\"); }\n", "banned function"),
    ("tests/unit/sip/bad_test.c", "int f(const char *s){ return atoi(s); }\n",
     "banned function"),
])
def test_rule_fires(tree, rel, text, reason):
    write(tree, rel, text)
    if rel.startswith("src/proxy/") or "wake.h" in text:
        write(tree, "src/wake/wake.h", "int wake_x;\n")
    rc, out = run(tree)
    assert rc == 1, out
    assert rel in out, out
    if reason:
        assert reason in out, out


def test_file_without_header_comment(tree):
    path = os.path.join(tree, "src/sip/nohead.c")
    with open(path, "w") as f:
        f.write("int x;\n")
    rc, out = run(tree)
    assert rc == 1 and "src/sip/nohead.c:1: file does not start with a comment" in out, out


@pytest.mark.parametrize("fn", ["strcpy", "strcat", "sprintf", "vsprintf",
                                "strtok", "atoi", "atol", "atoll", "gets",
                                "sscanf"])
def test_each_banned_function(tree, fn):
    write(tree, "src/sip/bad.c", f"void f(void){{ {fn}(0); }}\n")
    rc, out = run(tree)
    assert rc == 1 and f"src/sip/bad.c:2: banned function" in out, out


def test_banned_name_in_comment_or_string_passes(tree):
    write(tree, "src/sip/ok.c",
          '/* strcpy(d, s) is banned */\nconst char *s = "atoi(x)";\n')
    rc, out = run(tree)
    assert rc == 0, out


def test_unit_tests_of_unknown_room(tree):
    write(tree, "tests/unit/newroom/x_test.c", "int x;\n")
    rc, out = run(tree)
    assert rc == 1 and "tests/unit/newroom: no room 'newroom'" in out, out


def test_unknown_room(tree):
    write(tree, "src/newroom/x.c", "int x;\n")
    rc, out = run(tree)
    assert rc == 1 and "src/newroom: room not listed" in out, out


def test_real_tree_is_clean():
    rc, out = run(ROOT)
    assert rc == 0, out
