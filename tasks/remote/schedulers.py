"""The batch schedulers, one class each (sched_slurm.py, sched_sge.py, sched_pbs.py; what they
share in sched_common.py): submit, query, cancel, find a job. Another is one class and an entry
in SCHEDULERS (the launcher table picks it up)."""

from .sched_common import UNKNOWN, is_unknown
from .sched_pbs import Pbs
from .sched_sge import Sge
from .sched_slurm import Slurm, sbatch_quote

__all__ = ["SCHEDULERS", "Pbs", "Sge", "Slurm", "UNKNOWN", "is_unknown", "job_answers", "sbatch_quote"]
SCHEDULERS = {"slurm": Slurm, "sge": Sge, "pbs": Pbs}


def job_answers(addr, port, timeout=3):
    """What Jupyter in a job answers, from here: 'login' (it asks for the password), 'open' (it
    lets anyone in: never ours), or None (nothing answers yet)."""
    import http.client

    try:
        conn = http.client.HTTPConnection(addr, port, timeout=timeout)
        conn.request("GET", "/api/contents", headers={"Host": "localhost:%d" % port})
        status = conn.getresponse().status
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    return "login" if status in (401, 403) else "open" if status == 200 else None
