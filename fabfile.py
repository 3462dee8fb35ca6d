"""Jupyter on a machine you SSH into. `fab --list` shows the tasks; README.md explains them."""

from tasks import ns  # noqa: F401  (fab loads the `ns` collection)
