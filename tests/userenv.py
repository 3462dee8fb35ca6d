"""A Python environment of the test user's own, for tests that write into an environment's
etc/jupyter (which Jupyter reads before ~/.jupyter): never the shared test venvs, which another
test or a second run of the suite uses at the same time."""

import glob


def own_env(fab, base, script):
    """~/env: a venv on top of the packages of the installed venv `base` (a .pth file), with its
    own copy of `script` (jupyter-lab, jupyter-notebook) run by its own python."""
    site = glob.glob(f"{base}/lib/python3*/site-packages")[0]
    version = site.split("/lib/")[1].split("/")[0]
    fab.as_user(
        f"/usr/bin/python3 -m venv --without-pip env && echo {site} > env/lib/{version}/site-packages/base.pth && "
        f"{{ echo '#!{fab.home}/env/bin/python3'; tail -n +2 {base}/bin/{script}; }} > env/bin/{script} && chmod +x env/bin/{script}"
    )
    return fab.home / "env"
