"""A user's own Jupyter config that tries every setting deciding who gets in, on every class
that could carry it: tokens, another password, no password, any origin, no XSRF check, remote
Host headers, all interfaces, other identity providers and login handlers. Our settings must win
over all of it, whatever the file (name, format, directory)."""

import json

from tasks.ops.password import hash_password

from .jupyter_http import Session, login_and_list

TOKEN = "letmein-token"
INTRUDER = "intruder password"
INTRUDER_HASH = hash_password(INTRUDER)
EVIL_HOST = "evil.example"
EVIL_ORIGIN = "http://evil.example"

# every class of each kind of Jupyter that reads these keys (and the ones a shim moves from)
APP_CLASSES = ("ServerApp", "NotebookApp", "LabApp", "JupyterNotebookApp")
IDENTITY_CLASSES = ("IdentityProvider", "PasswordIdentityProvider", "LegacyIdentityProvider")


SERVER2_ONLY = ("allow_unauthenticated_access", "identity_provider_class")


def settings(kind="server"):
    """{class: {key: value}} for a .json file (a .py file adds classes of its own). For Jupyter
    Server 1 without the keys it does not have (its notebook_shim stops Jupyter on an unknown
    key, whoever wrote it)."""
    app = {
        "ip": "0.0.0.0",
        "token": TOKEN,
        "password": INTRUDER_HASH,
        "password_required": False,
        "allow_password_change": True,
        "allow_origin": "*",
        "allow_origin_pat": ".*",
        "allow_credentials": True,
        "disable_check_xsrf": True,
        "allow_remote_access": True,
        "local_hostnames": ["localhost", EVIL_HOST],
        "allow_unauthenticated_access": True,
        "identity_provider_class": "jupyter_server.auth.identity.IdentityProvider",
        "open_browser": True,
        "base_url": "/elsewhere/",
        "port_retries": 50,
    }
    if kind == "server1":
        app = {k: v for k, v in app.items() if k not in SERVER2_ONLY}
    config = {name: dict(app) for name in APP_CLASSES}
    for name in IDENTITY_CLASSES:
        config[name] = {"token": TOKEN}
    for name in IDENTITY_CLASSES[1:]:
        config[name].update(hashed_password=INTRUDER_HASH, password_required=False, allow_password_change=True)
    return config


PY_EXTRA = """
# A login handler and an identity provider of the user's own that let anyone in.
from jupyter_server.auth.identity import IdentityProvider as _Base, User as _User
from jupyter_server.auth.login import LoginFormHandler as _Form


class OpenDoor(_Base):
    def get_user(self, handler):
        return _User("intruder")


class OpenLogin(_Form):
    @classmethod
    def get_user(cls, handler):
        return "intruder"

    @classmethod
    def get_login_available(cls, settings):
        return True


c.ServerApp.identity_provider_class = OpenDoor
c.OpenDoor.token = %(token)r
c.ServerApp.login_handler_class = OpenLogin
for _name in ("IdentityProvider", "PasswordIdentityProvider", "LegacyIdentityProvider"):
    c[_name].login_handler_class = OpenLogin
""" % {"token": TOKEN}



def open_login(package, apps):
    """A .py config's login handler of the user's own that lets anyone in (classic Notebook and
    Jupyter Server 1, which have no identity providers)."""
    return (
        f"\nfrom {package}.auth.login import LoginHandler as _Login\n\n\n"
        "class OpenLogin(_Login):\n"
        "    @classmethod\n"
        "    def get_user(cls, handler):\n"
        "        return 'intruder'\n\n\n"
    ) + "".join(f"c.{app}.login_handler_class = OpenLogin\n" for app in apps)


PY_EXTRA_NB6 = open_login("notebook", ["NotebookApp"])
PY_EXTRA_SERVER1 = open_login("jupyter_server", ["ServerApp", "NotebookApp"])


def as_json(kind="server"):
    return json.dumps(settings(kind), indent=1)


def as_py(kind):
    """kind: server (Jupyter Server 2), server1, nb6 (classic Notebook)."""
    lines = []
    for name, keys in settings(kind).items():
        if kind == "nb6" and name != "NotebookApp":
            continue  # classic Notebook cannot import jupyter_server's classes
        if kind == "server1" and name in IDENTITY_CLASSES:
            continue  # Server 1 has none (a section for them would do nothing)
        for key, value in keys.items():
            lines.append(f"c.{name}.{key} = {value!r}")
    lines.append({"nb6": PY_EXTRA_NB6, "server1": PY_EXTRA_SERVER1}.get(kind, PY_EXTRA))
    return "\n".join(lines) + "\n"


def ways_in(url, password, context=None, public=False):
    """Every way past the password that the server at url allows (an empty list: none), and
    whether the password itself works. The checks are the ones a browser or a script would try.
    context: an SSLContext for https; public: reached by its host name, so no Host-header check."""
    found = []
    anonymous = Session(url, context)
    if anonymous.get("api/status")[0] != 403:
        found.append("the API answers without credentials")
    if anonymous.get(f"api/status?token={TOKEN}")[0] != 403:
        found.append("the user's token in the URL")
    if anonymous.request("api/status", headers={"Authorization": f"token {TOKEN}"})[0] != 403:
        found.append("the user's token in a header")
    if login_and_list(url, INTRUDER, context)[1] != 403:
        found.append("the user's own password hash")
    if login_and_list(url, "", context)[1] != 403:
        found.append("an empty password")
    headers = anonymous.request("api", headers={"Origin": EVIL_ORIGIN})[1]
    if headers.get("Access-Control-Allow-Origin"):
        found.append(f"cross-origin requests (Access-Control-Allow-Origin: {headers['Access-Control-Allow-Origin']})")
    if not public and anonymous.request("api", headers={"Host": EVIL_HOST})[0] != 403:
        found.append("a remote Host header (DNS rebinding)")
    user = Session(url, context)
    if user.login(password) != 200 or user.get("api/contents")[0] != 200:
        found.append("(the real password does not work)")
    else:
        status = user.request("api/contents", method="POST", data=b"{}", headers={"Content-Type": "application/json"})[0]
        if status != 403:
            found.append(f"a POST without the XSRF token ({status})")
    return found
