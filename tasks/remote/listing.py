"""The list action: every instance of this tool on the host, and the Jupyter servers of this
user that it did not start."""

import os
import time

from .facts import Instance
from .files import read_json
from .instance import instance_names
from .kinds import runtime_dir
from .net import alive
from .status import status


def act_list(run):
    """Every instance of this tool here, and the Jupyter servers of this user that it did not
    start (from Jupyter's own runtime files: what `jupyter server list` reads)."""
    instances, ours = [], set()
    for name in instance_names(run.inst.home):
        one = Instance(run.inst.home, name)
        state = one.state()
        instances.append({"name": name, "status": status(run, one, state)})
        ours.update([state.get("pid")] + one.unrecorded(None))
    return {"instances": instances, "others": other_servers(ours), "now": int(time.time())}


def other_servers(ours):
    """Live servers in the runtime directories (the environment's, and Jupyter's default) whose
    pid is not one of OURS. Only what locates them: a runtime file's token stays here."""
    found = []
    dirs = []
    for d in (runtime_dir(os.environ), runtime_dir({})):
        if d not in dirs:
            dirs.append(d)
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if not (n.endswith(".json") and (n.startswith("jpserver-") or n.startswith("nbserver-"))):
                continue
            info = read_json(os.path.join(d, n))
            pid = info.get("pid") if isinstance(info, dict) else None
            if not isinstance(pid, int) or pid in ours or not alive(pid, "jupyter") or any(f["pid"] == pid for f in found):
                continue
            url = info.get("url") if isinstance(info.get("url"), str) else None
            port = info.get("port") if isinstance(info.get("port"), int) and info.get("port") else None
            found.append({
                "pid": pid, "port": port, "socket": info.get("sock") or None,
                "url": url.split("?")[0] if url else None,
                "version": info.get("version") if isinstance(info.get("version"), str) else None,
                "root_dir": info.get("root_dir") or info.get("notebook_dir") or None,
                "kind": "nb6" if n.startswith("nbserver-") else "server",
            })
    return found
