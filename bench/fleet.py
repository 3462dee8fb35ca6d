"""Groups: setup on 8 hosts at once against one (the default mode), and the figures of a group
of 32 hosts (--fleet32), each host in its own network namespace with its own sshd."""

import json
import os
import resource
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.sshhost import SSHHost, free_port

from .harness import FAB, PASSWORD, ROOT, delay_proxy, ssh_forward, time_forward, turns, until_answered
from .jupyter import Started, parallel_jupyter_floor


def fleet_figure(runs, count=8, rtt_ms=0, floor=None):
    """setup on `count` isolated hosts at once (--group) against setup on one of them; with
    rtt_ms, each host is reached through the delaying proxy. FLOOR: a function measured in the
    same turns as the setups (this machine's floor); its median comes last, else None."""
    print(f"Fleet: {count} hosts, each in its own network namespace with its own sshd, {rtt_ms:.0f} ms RTT:", flush=True)
    hosts, proxy = [], None
    tmp = Path(tempfile.mkdtemp())
    try:
        for i in range(count):
            hosts.append(SSHHost(users=[(f"fjb{i}", "/bin/bash", True, False)], prefix=f"fabjupyter-bench{i}-", netns=(f"fjbns{i}", 100 + i)))
        known = tmp / "known_hosts"
        known.write_text("".join(h.known_hosts.read_text() for h in hosts))
        ssh_config = tmp / "ssh_config"
        config = f"Host *\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
        names = [h.address for h in hosts]
        if rtt_ms:
            routes = [(free_port(), h.address, 22) for h in hosts]
            proxy = delay_proxy(rtt_ms, routes)
            names = [f"fjb{i}-far" for i in range(count)]
            config = "".join(f"Host {n}\n  HostName 127.0.0.1\n  Port {r[0]}\n  HostKeyAlias {r[1]}\n" for n, r in zip(names, routes)) + config
        ssh_config.write_text(config)
        lines = ["hosts:"]
        for i, h in enumerate(hosts):
            lines += [f"  fjb{i}:", f"    host: {names[i]}", f"    user: {h.users[f'fjb{i}'].name}", f"    identity: {h.client_key}"]
        lines += ["groups:", "  one: [fjb0]", f"  all: [{', '.join(f'fjb{i}' for i in range(count))}]"]
        hosts_file = tmp / "hosts.yaml"
        hosts_file.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(hosts_file))

        def setup(group):
            for i, h in enumerate(hosts):
                h.reset_user(f"fjb{i}")
            start = time.monotonic()
            r = subprocess.run([*FAB, "-S", str(ssh_config), "setup", "--group", group, "--password-stdin"],
                               cwd=ROOT, env=env, input=PASSWORD + "\n", capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(r.stdout + r.stderr)
            return time.monotonic() - start

        one, many, *floor_time = turns(runs, lambda: setup("one"), lambda: setup("all"), *([floor] if floor else []))

        def again(group):
            start = time.monotonic()
            subprocess.run([*FAB, "-S", str(ssh_config), "setup", "--group", group], cwd=ROOT, env=env, capture_output=True, check=True)
            return time.monotonic() - start

        setup("all")
        one_again, many_again = turns(runs, lambda: again("one"), lambda: again("all"))
        return one, many, one_again, many_again, (floor_time or [None])[0]
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait()
        for h in hosts:
            h.close()


def task_on(where, task):
    """fab's words for TASK on WHERE, ("-H", HOST) or ("--group", NAME)."""
    return [*where, task] if where[0] == "-H" else [task, *where]


class Fleet:
    """COUNT isolated hosts, each in its own network namespace with its own sshd and account,
    behind one delaying proxy (RTT_MS), named fjb0..fjbN-1 in a hosts.yaml with the groups
    `one` (fjb0) and `all`; this machine's ~/.config for fabjupyter is a temporary one."""

    def __init__(self, count, rtt_ms):
        self.count, self.hosts, self.proxy = count, [], None
        self.tmp = Path(tempfile.mkdtemp())
        try:
            for i in range(count):
                self.hosts.append(SSHHost(users=[(f"fjb{i}", "/bin/bash", True, False)], prefix=f"fabjupyter-bench{i}-",
                                          netns=(f"fjbns{i}", 100 + i)))
            known = self.tmp / "known_hosts"
            known.write_text("".join(h.known_hosts.read_text() for h in self.hosts))
            for _ in range(5):  # a port free_port() found may be taken before the proxy binds it
                routes = [(free_port(), h.address, 22) for h in self.hosts]
                self.proxy = delay_proxy(rtt_ms, routes)
                if self.proxy.poll() is None:
                    break
                self.proxy.wait()
            else:
                raise RuntimeError("the delaying proxy could not bind its ports")
            self.names = [f"fjb{i}-far" for i in range(count)]
            self.ssh_config = self.tmp / "ssh_config"
            self.ssh_config.write_text(
                "".join(f"Host {n}\n  HostName 127.0.0.1\n  Port {r[0]}\n  HostKeyAlias {r[1]}\n  User {h.users[f'fjb{i}'].name}\n"
                        f"  IdentityFile {h.client_key}\n  IdentitiesOnly yes\n"
                        for i, (n, r, h) in enumerate(zip(self.names, routes, self.hosts)))
                + f"Host *\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n")
            lines = ["hosts:"]
            for i, h in enumerate(self.hosts):
                lines += [f"  fjb{i}:", f"    host: {self.names[i]}", f"    user: {h.users[f'fjb{i}'].name}", f"    identity: {h.client_key}"]
            lines += ["groups:", "  one: [fjb0]", f"  all: [{', '.join(f'fjb{i}' for i in range(count))}]"]
            (self.tmp / "hosts.yaml").write_text("\n".join(lines) + "\n")
            self.env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(self.tmp / "hosts.yaml"), XDG_CONFIG_HOME=str(self.tmp / "xdg"))
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.proxy:
            self.proxy.terminate()
            self.proxy.wait()
        for h in self.hosts:
            h.close()

    def reset(self):
        for i, h in enumerate(self.hosts):
            h.reset_user(f"fjb{i}")

    def fab(self, *args, input=None):
        """Seconds of one `fab` run (an error if it fails)."""
        start = time.monotonic()
        r = subprocess.run([*FAB, "-S", str(self.ssh_config), *args], cwd=ROOT, env=self.env, input=input, capture_output=True, text=True)
        took = time.monotonic() - start
        if r.returncode != 0:
            raise RuntimeError(f"fab {' '.join(args)}: {r.stdout}{r.stderr}")
        return took

    def cold_setup(self, *where):
        """Seconds of `fab setup` on fresh accounts (the reset before it is not counted)."""
        self.reset()
        return self.fab(*task_on(where, "setup"), "--password-stdin", input=PASSWORD + "\n")

    def tunnel(self, *where):
        """Seconds from starting `fab tunnel` until it printed its URL(s): it prints a URL only
        once an answer came through that forward and the host confirmed where its Jupyter runs."""
        start = time.monotonic()
        p = subprocess.Popen([*FAB, "-S", str(self.ssh_config), *task_on(where, "tunnel")], cwd=ROOT, env=self.env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            urls = []
            for line in p.stdout:
                if "Jupyter is at " in line:  # one host
                    urls.append(line.split("Jupyter is at ", 1)[1].split()[0])
                    break
                words = line.split()
                if len(words) == 2 and words[0].startswith("fjb") and words[1].startswith("http://localhost:"):
                    urls.append(words[1])  # a row of the group's table
                if line.startswith("Ctrl-C"):
                    break
            took = time.monotonic() - start
            if len(urls) != (1 if where[0] == "-H" else self.count):
                raise RuntimeError(f"fab tunnel: {urls} {p.stderr.read() if p.poll() is not None else ''}")
            return took
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(30)

    def ssh_true(self, count):
        """Seconds for COUNT `ssh host true` at once, one per host: the machine's floor for that
        many logins, sshd's side included (the hosts share this machine's cores)."""
        start = time.monotonic()
        procs = [subprocess.Popen(["ssh", "-F", str(self.ssh_config), name, "true"], stdin=subprocess.DEVNULL)
                 for name in self.names[:count]]
        if any(p.wait() for p in procs):
            raise RuntimeError("ssh host true failed")
        return time.monotonic() - start

    def target(self, i):
        """Where a raw `ssh -L` reaches host I's Jupyter: its Unix socket (the default instance's,
        ~/.fabjupyter/run/jupyter.sock) when there is one, else 127.0.0.1:8888."""
        sock = self.hosts[i].users[f"fjb{i}"].home / ".fabjupyter" / "run" / "jupyter.sock"
        return str(sock) if sock.is_socket() else "127.0.0.1:8888"

    def raw_forwards(self, count):
        """Seconds for COUNT raw `ssh -N -L` at once, one per host, until each answers: the
        machine's floor for that many forwards."""
        ports = [free_port() for _ in range(count)]
        with tempfile.TemporaryFile() as errors:
            start = time.monotonic()
            procs = [ssh_forward(self.ssh_config, name, lp, self.target(i), stderr=errors)
                     for i, (lp, name) in enumerate(zip(ports, self.names))]
            try:
                with ThreadPoolExecutor(max_workers=count) as pool:  # each waited for at once, as fab does
                    for future in [pool.submit(until_answered, lp, p, errors=errors) for lp, p in zip(ports, procs)]:
                        future.result()
                return time.monotonic() - start
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait()

    def raw_forward(self):
        """Seconds from starting a raw `ssh -N -L` to fjb0's Jupyter until an answer through it."""
        return time_forward(self.ssh_config, self.names[0], self.target(0))

    def started(self, i=0):
        """What this tool started on host I (a Started: the floors start the same)."""
        r = subprocess.run([*FAB, "-S", str(self.ssh_config), "-H", f"fjb{i}", "status", "--json"], cwd=ROOT, env=self.env,
                           capture_output=True, text=True, check=True)
        return Started(json.loads(r.stdout)["pid"], self.hosts[i].users[f"fjb{i}"].home)


def fleet32_figures(b, runs, count=32, rtt_ms=100.0):
    """Issue 20's figures: a group of COUNT hosts at RTT_MS against one host of it, each pair in
    turns in one run; and a cold setup of all against this machine's floor (COUNT plain Jupyter
    starts at once, no SSH), since the COUNT "hosts" share its cores."""
    rtt = rtt_ms / 1000.0
    print(f"Fleet: {count} hosts, each in its own network namespace with its own sshd, {rtt_ms:.0f} ms RTT:", flush=True)
    f = Fleet(count, rtt_ms)
    started = None
    try:
        f.cold_setup("--group", "all")  # the configuration the floor's starts read is made the same way
        started = f.started()
        f.tunnel("-H", "fjb0")  # every tunnel figure is of hosts seen before (their ports remembered)
        f.tunnel("--group", "all")
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        f.fab("status", "--group", "all")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        per_host = (after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) / count
        status_one, status_all, again_one, again_all = turns(
            runs, lambda: f.fab("-H", "fjb0", "status"), lambda: f.fab("status", "--group", "all"),
            lambda: f.fab("-H", "fjb0", "setup"), lambda: f.fab("setup", "--group", "all"))
        tunnel_one, tunnel_all, raw, raw_all = turns(runs, lambda: f.tunnel("-H", "fjb0"), lambda: f.tunnel("--group", "all"),
                                                     f.raw_forward, lambda: f.raw_forwards(count))
        true_one, true_all = turns(runs, lambda: f.ssh_true(1), lambda: f.ssh_true(count))
        at = f"{count} hosts, {rtt_ms:.0f} ms RTT"
        b.row(f"status --group, {at}", status_all, status_one, "status on 1 host", "<= 1.3x", status_all <= 1.3 * status_one)
        b.row(f"setup --group, nothing to change, {at}", again_all, again_one, "setup again on 1 host", "<= 1.3x",
              again_all <= 1.3 * again_one)
        b.row(f"tunnel --group until every forward answers, {at}", tunnel_all, tunnel_one, "tunnel on 1 host", "<= 2x",
              tunnel_all <= 2 * tunnel_one)
        b.row(f"tunnel (1 host) until its URL, after an answer through it, {rtt_ms:.0f} ms RTT", tunnel_one, raw,
              "raw ssh -N -L until an answer", "<= + 3 RTT", tunnel_one <= raw + 3 * rtt)
        b.row(f"  (context) this machine: {count} `ssh host true` at once, one per host", true_all, true_one, "1 ssh host true",
              "(context)", True)
        b.row(f"tunnel --group until every forward answers, {at}, vs this machine's floor", tunnel_all, raw_all,
              f"floor ({count} raw ssh -N -L at once until each answers)", "(context)", True)
        print(f"  (context) this side's CPU per host, status --group on {count} hosts: {per_host * 1000:.1f} ms", flush=True)
        cold_one, cold_all, floor = turns(runs, lambda: f.cold_setup("-H", "fjb0"), lambda: f.cold_setup("--group", "all"),
                                          lambda: parallel_jupyter_floor(count, runs, started))
        b.row(f"setup --group from nothing, {at}, vs this machine's floor", cold_all, floor,
              f"floor ({count} plain Jupyter starts at once, no SSH)", "<= 1.2x", cold_all <= 1.2 * floor)
        b.row(f"  (context) setup --group from nothing, {at}", cold_all, cold_one, "setup on 1 host", "(context)", True)
    finally:
        f.close()
        if started:
            started.close()
    return per_host
