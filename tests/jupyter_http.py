"""Talking to Jupyter over HTTP as a browser would: the login form, then the REST API."""

import http.client
import http.cookiejar
import socket
import urllib.error
import urllib.parse
import urllib.request


class Session:
    def __init__(self, base, context=None):
        """context: an ssl.SSLContext for https (e.g. trusting only the generated certificate)."""
        self.base = base if base.endswith("/") else base + "/"
        self.jar = http.cookiejar.CookieJar()
        handlers = [urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar)]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def get(self, path):
        """(status, body) for a GET; HTTP errors are answers too."""
        status, _, body = self.request(path)
        return status, body

    def request(self, path, method="GET", headers=None, data=None):
        """(status, headers, body) for any request; HTTP errors are answers too."""
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {}, method=method)
        try:
            with self.opener.open(request, timeout=20) as r:
                return r.status, r.headers, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8", "replace")

    def login(self, password):
        """Submit the login form; returns the status of the answer (after redirects)."""
        status, _ = self.get("login")
        assert status == 200, f"login page answered {status}"
        xsrf = next((c.value for c in self.jar if c.name == "_xsrf"), "")
        data = urllib.parse.urlencode({"password": password, "_xsrf": xsrf}).encode()
        try:
            with self.opener.open(self.base + "login?next=%2Fapi%2Fstatus", data=data, timeout=20) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (Jupyter's default here: --sock)."""

    def __init__(self, path, host="localhost", **kw):
        super().__init__(host, **kw)
        self.socket_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(self.timeout)
        s.connect(self.socket_path)
        self.sock = s


class UnixHandler(urllib.request.HTTPHandler):
    def __init__(self, path):
        super().__init__()
        self.socket_path = path

    def http_open(self, req):
        return self.do_open(lambda host, **kw: UnixHTTPConnection(self.socket_path, host, **kw), req)


def unix_session(path):
    """A Session with a Jupyter on the Unix socket PATH (of this machine)."""
    s = Session("http://localhost/")
    s.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(s.jar), UnixHandler(path))
    return s


def login_and_list(base, password, context=None):
    """Log in with the password and list the root directory: (login status, /api/contents status, body)."""
    s = Session(base, context)
    login_status = s.login(password)
    status, body = s.get("api/contents")
    return login_status, status, body


def run_code(base, password, code, timeout=60):
    """Log in, start a kernel, run CODE in it over the kernel's websocket (as JupyterLab does),
    and return what it printed; the kernel is shut down after."""
    import json
    import uuid

    import websocket

    s = Session(base)
    assert s.login(password) == 200
    xsrf = next((c.value for c in s.jar if c.name == "_xsrf"), "")
    headers = {"X-XSRFToken": xsrf, "Content-Type": "application/json"}
    status, _, body = s.request("api/kernels", method="POST", headers=headers, data=b"{}")
    assert status == 201, (status, body)
    kernel = json.loads(body)["id"]
    cookie = "; ".join(f"{c.name}={c.value}" for c in s.jar)
    ws = websocket.create_connection(s.base.replace("http", "ws", 1) + f"api/kernels/{kernel}/channels", cookie=cookie,
                                     header=[f"X-XSRFToken: {xsrf}"], timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False,
                        "stop_on_error": True},
        }))
        # the reply comes on the shell channel, the output on iopub, which ends with the kernel
        # idle again: the two channels are not ordered with each other, so wait for both
        printed, replied, idle = [], False, False
        while not (replied and idle):
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])
            elif message["msg_type"] == "execute_reply":
                replied = True
            elif message["msg_type"] == "status" and message["content"].get("execution_state") == "idle":
                idle = True
        return "".join(printed)
    finally:
        ws.close()
        s.request(f"api/kernels/{kernel}", method="DELETE", headers=headers)
