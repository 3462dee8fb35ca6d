"""The tasks: thin @task functions that parse options, build settings, call an operation of
tasks/ops on each host (tasks/hosts/fleet.py) and print what it says."""
