"""A missing prerequisite fails the test, never skips it.

ctest reports a pytest run as Passed when every test in it skipped, so a
skip would let `make test` pass without testing push (pushsim not built),
calls (sipp missing) or the admin page (chromium, playwright-core). These
tests run pytest itself on the real test files (and on a file of skips)
with the prerequisite taken away, and require a failure that names it.
scripts/install-deps must fail too when it cannot install playwright-core.
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", ".."))


def pytest_run(args, env_over=None, cwd=HERE, timeout=120):
    """pytest in a child process, as ctest runs it; returns (rc, output)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.update(env_over or {})
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                        "no:cacheprovider"] + list(args), cwd=cwd, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace")


SKIPS = '''
import pytest

pytestmark = pytest.mark.skipif(True, reason="marked-skip-reason")


def test_marked():
    pass
'''

SKIP_CALLS = '''
import pytest


def test_called():
    pytest.skip("called-skip-reason")


def test_importorskip():
    pytest.importorskip("no_such_module_anywhere_xyz")


def test_passes():
    pass
'''

MODULE_SKIP = '''
import pytest

pytest.skip("module-skip-reason", allow_module_level=True)


def test_never_collected():
    pass
'''


def test_skips_are_failures(tmp_path):
    """Every way to skip (skipif mark, pytest.skip, importorskip, a module
    skip) is reported as a failure with its reason; passing tests still
    pass."""
    shutil.copy(os.path.join(HERE, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_marked.py").write_text(SKIPS)
    (tmp_path / "test_skipcalls.py").write_text(SKIP_CALLS)
    rc, out = pytest_run([str(tmp_path / "test_marked.py"),
                          str(tmp_path / "test_skipcalls.py")], cwd=tmp_path)
    assert rc == 1, out
    assert "skipped" not in out, out
    for reason in ("marked-skip-reason", "called-skip-reason",
                   "no_such_module_anywhere_xyz"):
        assert reason in out, out
    assert "1 passed" in out and "2 failed, 1 passed, 1 error" in out, out
    (tmp_path / "test_module.py").write_text(MODULE_SKIP)
    rc, out = pytest_run([str(tmp_path / "test_module.py")], cwd=tmp_path)
    assert rc != 0 and "module-skip-reason" in out, out
    assert "skipped" not in out, out


def test_pushsim_missing_fails_wake_tests(tmp_path):
    """The wake tests with PUSHSIM pointing nowhere: each module fails on
    its first test with "pushsim not built" (they used to skip, and
    ctest said Passed)."""
    missing = str(tmp_path / "no-pushsim")
    for mod in ("test_wake.py", "test_wake_sipp.py", "test_admin_push.py",
                "test_wake_metrics.py"):
        rc, out = pytest_run(["-x", mod], {"PUSHSIM": missing})
        assert rc == 1, mod + "\n" + out
        assert "pushsim not built" in out, mod + "\n" + out
        assert "skipped" not in out and " passed" not in out, out
    rc, out = pytest_run(["-x", os.path.join(HERE, "push")],
                         {"PUSHSIM": missing})
    assert rc == 1 and "not built" in out, out


def test_sipp_missing_fails(tmp_path):
    """Without sipp on PATH the SIPp tests fail saying so."""
    bindir = tmp_path / "bin"  # PATH without sipp, with the rest
    bindir.mkdir()
    for tool in ("openssl",):
        path = shutil.which(tool)
        if path:
            os.symlink(path, str(bindir / tool))
    env = {"PATH": str(bindir)}
    for args in (["-x", "test_calls_sipp.py", "-k", "busy_486"],
                 ["-x", "test_register.py", "-k", "register_and_fetch"],
                 ["-x", "test_wake_sipp.py", "-k", "test_c_"]):
        rc, out = pytest_run(args, env)
        assert rc == 1, " ".join(args) + "\n" + out
        assert "sipp not installed" in out, " ".join(args) + "\n" + out


def test_browser_prerequisites_missing_fail(tmp_path):
    """No chromium: the browser test fails naming what is missing."""
    rc, out = pytest_run(["-x", "test_admin_browser.py"],
                         {"CHROMIUM": str(tmp_path / "no-chromium")})
    assert rc == 1, out
    assert "chromium missing" in out, out


def test_install_deps_fails_when_npm_ci_fails(tmp_path):
    """scripts/install-deps exits non-zero when npm ci fails (it used to
    print "the browser test will skip" and exit 0). Run on a copy whose
    browser/ has no node_modules, with an npm that fails."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(os.path.join(SOURCE, "scripts", "install-deps"),
                tmp_path / "scripts" / "install-deps")
    browser = tmp_path / "tests" / "integration" / "browser"
    browser.mkdir(parents=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(HERE, "browser", f), browser / f)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "npm").write_text("#!/bin/sh\necho fake npm fails >&2\nexit 1\n")
    (fake / "npm").chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (fake, os.environ["PATH"]))
    r = subprocess.run(["sh", str(tmp_path / "scripts" / "install-deps")],
                       env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert r.returncode != 0, out
    assert "npm ci failed" in out and "playwright-core" in out, out
