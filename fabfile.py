"""Jupyter on a machine you SSH into. `fab --list` shows the tasks; README.md explains them."""

from tasks import ns  # noqa: F401  (fab loads the `ns` collection)
from tasks.errors import quiet_broken_pipe

quiet_broken_pipe()  # `fab --help setup | head -1`: no traceback
