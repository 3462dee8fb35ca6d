"""What a task does on one host: `*_host(t) -> Outcome` and its helpers, called by
tasks/commands for one host or a group."""
