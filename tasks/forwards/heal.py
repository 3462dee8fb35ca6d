"""Keeping one host's forward alive until Ctrl-C: reconnect when the SSH connection drops,
follow Jupyter when it moves, forward nothing while it is not running."""

import time

from ..errors import AuthError, HostError, UserError
from ..ops.server import NotRunning, ask_where
from ..ops.ssh_entry import Seen, keep_current
from .confirmed import READY_TIMEOUT, make_tunnel
from .ports import remember_seen

BACKOFF = (0.5, 1, 2, 4, 5)  # seconds between reconnection attempts; the last one repeats
CHECK_EVERY = 10  # seconds between checks that Jupyter still listens on the forwarded port


def keep_alive(t, tun):
    """Watch the forward until Ctrl-C: when the SSH connection drops (sshd restarted, network
    gone, laptop slept) reconnect with backoff on the same local port; when Jupyter answers on
    another port (restarted elsewhere), follow it. One line per event. The forward open at the
    end (TUN or the one that replaced it) is closed on the way out."""
    checked = time.monotonic()
    try:
        while True:
            time.sleep(0.05 if tun.guard else 0.2)
            if tun.running():
                since = time.monotonic() - checked
                # ask where Jupyter is: soon after a refused forward, and every CHECK_EVERY seconds
                if not (tun.target_gone and since > 2) and since < CHECK_EVERY:
                    continue
                checked, tun.target_gone = time.monotonic(), False
                try:
                    where = ask_where(t)
                except AuthError:
                    raise
                except NotRunning as e:
                    # not running (any more): no forward until it runs again and the host says where
                    tun.close()
                    print(f"{t.label}: {e.message if isinstance(e, HostError) else e}; the tunnel waits for it, forwarding "
                          "nothing", flush=True)
                    tun = _reconnect(t, tun)
                    continue
                except UserError as e:
                    print(f"{t.label}: {e.message if isinstance(e, HostError) else e}", flush=True)
                    continue
                if tun.points_to(where):
                    continue
                print(f"{t.label}: Jupyter moved to {where.words}; following it", flush=True)
                tun.close()
            elif tun.guard and tun.guard.reason:
                print(f"{t.label}: Jupyter {tun.guard.reason}; the forward to it is closed until the host confirms where it "
                      "runs", flush=True)
            else:
                why = tun.guard.lost if tun.guard and tun.guard.lost else tun.failure()
                print(f"{t.label}: connection lost ({why}); reconnecting", flush=True)
            tun = _reconnect(t, tun)
    finally:
        tun.close()


def _reconnect(t, tun):
    """A forward on TUN's local port that answers again, made with backoff. Each attempt logs in
    at most once (asking on the terminal, where the host asks); a refused login ends the tunnel,
    said, not retried. The forward is made only to where the host says its Jupyter runs now."""
    attempt = 0
    while True:
        time.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        attempt += 1
        try:
            where = ask_where(t)
        except AuthError:
            raise
        except UserError:
            continue
        try:
            fresh = make_tunnel(t, tun.local_port, where)
        except AuthError:
            raise
        except UserError:
            continue
        if not fresh.wait_ready(READY_TIMEOUT) and fresh.refused():
            fresh.close()
            raise AuthError(t.label, "refused", reason=f"ssh said: {fresh.failure()}")
        if fresh.ready:
            remember_seen([(t, where)])
            for line in keep_current([(t, Seen.at(where), None)]):  # a job moved: its entry follows
                print(line, flush=True)
            print(f"{t.label}: reconnected; Jupyter is at {fresh.url} again", flush=True)
            return fresh
        fresh.close()
