"""--dry-run shows what would change and changes nothing at all, not even an upload."""

from .test_errors import untouched


def snapshot(fab):
    return {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"") for p in fab.home.rglob("*")}


def test_dry_run_on_a_fresh_host_changes_nothing(fab):
    r = fab("setup", "--dry-run", "--password-stdin", input="pw\n")
    out = r.stdout
    assert "fjtest: would write the configuration in ~/.fabjupyter:" in out
    assert "+FJ_ROOT=''" in out and '+    "ip": "127.0.0.1",' in out
    assert "fjtest: would set the password" in out
    assert f"fjtest: would start Jupyter (nohup, port {fab.port} or the next free one)" in out
    # start would fail there (nothing is configured): its dry run says so, and exits 1
    r = fab("start", "--dry-run", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "fjtest: not configured yet; run `fab -H fjtest setup` (or `config`) (so start would stop before changing anything)"
    expected = {
        "config": "fjtest: would write the configuration in ~/.fabjupyter:",
        "stop": "fjtest: Jupyter is not running; stop would do nothing",
        "password": "fjtest: would set the password (hash only, mode 0600)",
        "cert": "would make a new certificate (created)",
    }
    for task, line in expected.items():
        r = fab(task, "--dry-run")
        assert line in r.stdout, (task, r.stdout)
    untouched(fab)
    assert list(fab.home.iterdir()) == []
    assert not fab.config_home.exists()  # no local certificate either


def test_dry_run_on_a_set_up_host_shows_a_diff_and_changes_nothing(fab):
    fab.setup()
    pid = fab.status()["pid"]
    before = snapshot(fab)
    r = fab("setup", "--dry-run")
    assert "configuration unchanged" in r.stdout and f"Jupyter would keep running (pid {pid})" in r.stdout
    r = fab("setup", "--dry-run", "--root-dir", "~/work", "--launcher", "tmux")
    assert "-FJ_ROOT=''" in r.stdout and "+FJ_ROOT=work" in r.stdout
    assert f"would restart Jupyter (pid {pid})" in r.stdout
    assert f"would create the root directory {fab.home}/work" in r.stdout
    assert f"would stop Jupyter (pid {pid})" in fab("stop", "--dry-run").stdout
    assert "start would do nothing" in fab("start", "--dry-run").stdout
    assert "would replace the password" in fab("password", "--dry-run").stdout
    assert snapshot(fab) == before
    assert fab.status()["pid"] == pid


def test_dry_run_reports_what_would_fail(fab_dash):
    r = fab_dash("setup", "--dry-run", "--password-stdin", input="pw\n", check=False)
    assert r.returncode == 1, r.stdout
    assert "fjdash: no Jupyter found there" in r.stderr and "so setup would stop before changing anything" in r.stderr
    untouched(fab_dash)
