"""The agent protocol: the one way to run something on a host. The bootstrap (bootstrap.sh) goes
to `sh -s` with every value quoted (shell); the agent (the remote folder joined into one script)
and its JSON request go inside it (script); the agent answers with JSON lines (client), turned
into one typed object per action (replies), as the action table (remote/spec.py) names them. Its
error codes become sentences (wording), in one place."""

from .client import cancel_jobs, read_line, run_agent, show_event
from .replies import (
    REPLIES, Change, CertReply, Changes, ErrorReply, InstallFacts, InstallReply, Instance, ListReply, LogsReply,
    OtherServer, ProtocolError, SetupReply, StartReply, Status, StatusReply, StopReply, WatchReply, WriteReply, parse,
)
from .script import BOOTSTRAP, LAUNCHING, NEEDS_JUPYTER, PROTOCOL, agent_script, run_script
from .shell import sh_assign, sh_quote, sh_words
from .wording import ERRORS, RemoteError, indented, queue_words
