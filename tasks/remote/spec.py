"""The actions, one table that both sides read: the client (what to send along, which reply type
to expect) and the agent (which actions take the lock, what a request may hold). A request is
checked against it as Ansible checks a module's arguments: a missing, unknown or mistyped field is
an error with a code, before anything runs. Standard library only, Python 3.6: it travels."""

REQUIRED = object()  # a field without a default


class BadRequest(Exception):
    """A request this table refuses: a code (bad_action, bad_request) and which field, how."""

    def __init__(self, code, detail=""):
        Exception.__init__(self, code, detail)
        self.code, self.detail = code, detail


class Field(object):
    """One field of a request. TYPE is str, int, bool or [str] (a list of strings); an absent
    field, or a null where null is not a value (NULL false), takes DEFAULT. ADDED: agent_script
    adds it, not the caller."""

    def __init__(self, name, type, default=REQUIRED, null=False, choices=None, added=False):
        self.name, self.type, self.default, self.null = name, type, default, null
        self.choices, self.added = choices, added

    def check(self, value):
        """VALUE as this field holds it, or a BadRequest naming the field."""
        if value is None and not self.null:
            if self.default is REQUIRED:
                raise BadRequest("bad_request", "field %r: missing" % self.name)
            value = self.default
        if value is None:
            return None
        if isinstance(value, list):
            value = list(value)  # the default's list is not the request's
        if not is_a(self.type, value):
            raise BadRequest("bad_request", "field %r: expected %s, got %r" % (self.name, type_words(self.type), value))
        if self.choices is not None and value not in self.choices:
            raise BadRequest("bad_request", "field %r: expected one of %s, got %r" % (self.name, ", ".join(self.choices), value))
        return value


def is_a(kind, value):
    if isinstance(kind, list):
        return isinstance(value, list) and all(is_a(kind[0], v) for v in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def type_words(kind):
    if isinstance(kind, list):
        return "a list of " + {str: "strings", int: "numbers"}[kind[0]]
    return {str: "a string", int: "a number", bool: "true or false"}[kind]


class Action(object):
    """One action: JUPYTER: it runs in Jupyter's environment and Python (the bootstrap finds
    them); LAUNCHES: it may start Jupyter; LOCKED: it takes the host's lock (a change); REPLY: the
    name of the client's reply class; FIELDS: what its request holds beyond those these imply.
    (Every remote module travels with every action, joined by pack.py: no field carries a file.)"""

    def __init__(self, name, reply, fields=(), jupyter=False, launches=False, locked=False):
        self.name, self.reply = name, reply
        self.jupyter, self.launches, self.locked = jupyter, launches, locked
        implied = COMMON + (JUPYTER_FIELDS if jupyter else ())
        implied += (TIMEOUT,) if locked else ()
        self.fields = dict((f.name, f) for f in implied + tuple(fields))


COMMON = (
    Field("v", int, added=True),  # the protocol's version
    Field("action", str, added=True),
    Field("instance", str, "default"),
    Field("dry_run", bool, False),  # check mode: report the changes, make none
)
# start Jupyter through boot.py, which imports ahead what it will need (opt-in)
JUPYTER_FIELDS = (Field("fast_start", bool, False),)
# seconds to wait for Jupyter to answer; a changing run waits that + 60 s for the host's lock
TIMEOUT = Field("timeout", int, 60)
SETTINGS = Field("settings_sh", str)  # settings.sh: the host's settings, as the bootstrap reads them
LAUNCH = (
    Field("launcher", str, "nohup"),
    Field("port", int, 8888),  # the port wanted (the next free one if taken); not used in socket mode
    Field("job_options", [str], []),  # the batch job's, one per directive line
    Field("queue_timeout", int, 0),  # seconds a batch job may wait in the queue (0: until cancelled)
)
PASSWORD = Field("password_hash", str, None, null=True)  # None: none given (asked back if needed)

ACTION_LIST = (
    Action("status", "StatusReply"),
    Action("setup", "SetupReply", jupyter=True, launches=True, locked=True, fields=(
        SETTINGS, PASSWORD, Field("install", bool, False), *LAUNCH,
        Field("salted", bool, False),  # the hash uses the salt it asked back: compare, do not replace
        Field("upgraded", bool, False),  # setup --upgrade installed a new version: restart Jupyter
    )),
    Action("config", "WriteReply", jupyter=True, locked=True, fields=(SETTINGS, Field("install", bool, False), *LAUNCH)),
    Action("password", "WriteReply", locked=True, fields=(PASSWORD,)),
    Action("start", "StartReply", jupyter=True, launches=True, locked=True, fields=LAUNCH),
    # launcher "": the launcher it runs with (setup applies hosts.yaml's)
    Action("restart", "StartReply", jupyter=True, launches=True, locked=True,
           fields=(Field("launcher", str, ""),) + LAUNCH[1:]),
    Action("stop", "StopReply", locked=True),
    Action("watch", "WatchReply", fields=(
        Field("port", int),  # where the tunnel's forward was confirmed
        Field("address", str, None, null=True),  # the node a batch job's Jupyter runs on
    )),
    Action("logs", "LogsReply", fields=(Field("lines", int, 50),)),
    Action("cert", "CertReply", fields=(
        Field("cert_digest", str, None, null=True), Field("key_digest", str, None, null=True),
        Field("new_instance", bool, False),  # setup may make the instance; cert alone serves one that exists
        Field("push", bool, False),  # install cert and key unless the host has exactly them
        Field("cert", str, None, null=True), Field("key", str, None, null=True),
    )),
    Action("list", "ListReply"),
    Action("install", "InstallReply", jupyter=True, locked=True, fields=(
        Field("settings_sh", str, None, null=True),
        Field("install", bool, False),
        Field("probe", bool, False),  # only the facts: the host's Python, platform, index
        Field("spec", [str], ["jupyterlab"]),
        Field("source", str, "index", choices=("index", "here")),  # here: the wheels were sent
        Field("upgrade", bool, False),
    )),
)
ACTIONS = dict((a.name, a) for a in ACTION_LIST)


def check_request(action, request, added=True):
    """REQUEST for ACTION with every default filled in; a BadRequest for an unknown action or a
    missing, unknown or mistyped field. ADDED false: the caller's part only (what agent_script
    adds is neither needed nor allowed)."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise BadRequest("bad_action", str(action))
    if not isinstance(request, dict):
        raise BadRequest("bad_request", "expected an object, got %r" % (request,))
    unknown = sorted(name for name in request if name not in spec.fields or not added and spec.fields[name].added)
    if unknown:
        raise BadRequest("bad_request", "unknown field %r for %s" % (unknown[0], action))
    if added and request.get("action", action) != action:
        raise BadRequest("bad_request", "field 'action': %r, not %r" % (request["action"], action))
    return dict((f.name, f.check(request.get(f.name))) for f in spec.fields.values() if added or not f.added)
