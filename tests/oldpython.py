"""Standard-library names, keywords and forms that a newer Python has and an older one lacks:
code that uses them parses as the older version's syntax (`ast.parse(..., feature_version=)`
catches the walrus, f-string `=`, positional-only parameters and other new grammar) and still
fails there when it runs. No older CPython is packaged on this machine (Debian 12), so the remote
side is checked against this table instead: the differences between 3.6 and 3.11 that code like
ours could meet, not every one.

`problems(source, oldest)` lists `line: what (Python X.Y)` for each use newer than `oldest`. A use
is allowed where it is guarded: an import inside `try: ... except ImportError`, a name inside
`except AttributeError`/`NameError`/`ImportError`, a keyword inside `except TypeError`, anything
inside `if sys.version_info >= (X, Y)` or `if hasattr(...)`."""

import ast

V37, V38, V39, V310, V311, V312 = (3, 7), (3, 8), (3, 9), (3, 10), (3, 11), (3, 12)

# module -> the version that added it
MODULES = {
    "contextvars": V37, "dataclasses": V37, "importlib.resources": V37, "importlib.metadata": V38,
    "graphlib": V39, "zoneinfo": V39, "tomllib": V311,
}

# module attribute or builtin -> the version that added it
NAMES = {
    "__future__.annotations": V37,
    "asyncio.run": V37, "asyncio.create_task": V37, "asyncio.get_running_loop": V37, "asyncio.to_thread": V39,
    "breakpoint": V37, "aiter": V310, "anext": V310,
    "contextlib.nullcontext": V37, "contextlib.asynccontextmanager": V37, "contextlib.AsyncExitStack": V37,
    "contextlib.chdir": V311,
    "datetime.datetime.fromisoformat": V37, "datetime.date.fromisoformat": V37, "datetime.UTC": V311,
    "functools.cached_property": V38, "functools.singledispatchmethod": V38, "functools.cache": V39,
    "hashlib.file_digest": V311,
    "itertools.pairwise": V310,
    "math.prod": V38, "math.isqrt": V38, "math.dist": V38, "math.comb": V38, "math.perm": V38, "math.lcm": V39,
    "os.register_at_fork": V37, "os.memfd_create": V38, "os.posix_spawn": V38, "os.pidfd_open": V39,
    "os.waitstatus_to_exitcode": V39,
    "random.randbytes": V39,
    "re.Pattern": V37, "re.Match": V37, "re.NOFLAG": V311,
    "shlex.join": V38,
    "signal.valid_signals": V38, "signal.raise_signal": V38, "signal.strsignal": V38, "signal.pidfd_send_signal": V39,
    "socket.create_server": V38, "socket.has_dualstack_ipv6": V38, "socket.send_fds": V39, "socket.recv_fds": V39,
    "ssl.TLSVersion": V37,
    "sys.breakpointhook": V37, "sys.unraisablehook": V38, "sys.platlibdir": V39, "sys.orig_argv": V310,
    "sys.stdlib_module_names": V310,
    "tarfile.data_filter": V312,
    "threading.excepthook": V38, "threading.get_native_id": V38,
    "time.time_ns": V37, "time.monotonic_ns": V37, "time.perf_counter_ns": V37, "time.process_time_ns": V37,
    "time.thread_time": V37, "time.clock_gettime_ns": V37,
    "typing.Literal": V38, "typing.Final": V38, "typing.Protocol": V38, "typing.TypedDict": V38,
    "typing.get_origin": V38, "typing.get_args": V38, "typing.Annotated": V39, "typing.TypeAlias": V310,
    "typing.ParamSpec": V310, "typing.Self": V311,
}

# methods whose name alone says it (no module of that name has an older one)
METHODS = {
    "removeprefix": V39, "removesuffix": V39,  # str, bytes
    "isascii": V37,  # str, bytes
    "fromisoformat": V37, "fromisocalendar": V38,  # date, datetime
    "is_relative_to": V39, "with_stem": V39, "hardlink_to": V310,  # pathlib
    "bit_count": V310,  # int
}

# (function, keyword) -> the version that added the keyword; a function name without a module
# ("unlink") is a method of that name on anything
KEYWORDS = {
    **{(f"subprocess.{f}", "text"): V37 for f in ("run", "Popen", "check_output", "call", "check_call")},
    ("subprocess.run", "capture_output"): V37,
    **{(f"subprocess.{f}", k): V39 for f in ("run", "Popen", "check_output", "call", "check_call")
       for k in ("user", "group", "extra_groups", "umask")},
    **{(f"subprocess.{f}", "process_group"): V311 for f in ("run", "Popen", "check_output", "call", "check_call")},
    ("collections.namedtuple", "defaults"): V37,
    ("http.client.HTTPConnection", "blocksize"): V37,
    ("shutil.copytree", "dirs_exist_ok"): V38,
    ("shutil.rmtree", "dir_fd"): V311, ("shutil.rmtree", "onexc"): V312,
    ("glob.glob", "root_dir"): V310, ("glob.glob", "dir_fd"): V310, ("glob.iglob", "root_dir"): V310,
    ("glob.glob", "include_hidden"): V311,
    ("itertools.accumulate", "initial"): V38,
    ("zip", "strict"): V310,
    **{(f"hashlib.{f}", "usedforsecurity"): V39 for f in ("new", "md5", "sha1", "sha256", "sha512")},
    ("unlink", "missing_ok"): V38,  # pathlib.Path
    ("write_text", "newline"): V310,  # pathlib.Path
    ("extractall", "filter"): V312, ("extract", "filter"): V312,  # tarfile (3.8.17+, 3.9.17+ backports)
}

BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}  # list[int] at run time: 3.9
GUARDS = {
    "import": {"ImportError", "ModuleNotFoundError"},
    "name": {"AttributeError", "NameError", "ImportError", "ModuleNotFoundError"},
    "keyword": {"TypeError"},
}


def version(v):
    return "%d.%d" % v


class _Checker(ast.NodeVisitor):
    def __init__(self, source, oldest):
        self.source, self.oldest = source, oldest
        self.aliases = {}  # local name -> what it names ("metadata" -> "importlib.metadata")
        self.found = []
        self.guards = []  # stack of sets: the kinds of use guarded here ("import", "name", "keyword", "all")
        self.loops = []  # stack: is the innermost enclosing loop/try-finally a loop?

    # --- helpers ---
    def report(self, node, what, added, kind):
        if added <= self.oldest:
            return
        if any("all" in g or kind in g for g in self.guards):
            return
        self.found.append((node.lineno, f"{what} (Python {version(added)})"))

    def qualname(self, node):
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return base + "." + node.attr if base else None
        return None

    def guarded(self, kinds, body):
        self.guards.append(kinds)
        for node in body:
            self.visit(node)
        self.guards.pop()

    # --- imports ---
    def visit_Import(self, node):
        for a in node.names:
            if a.asname:
                self.aliases[a.asname] = a.name
            else:
                self.aliases.setdefault(a.name.split(".")[0], a.name.split(".")[0])
            self.check_module(node, a.name)

    def visit_ImportFrom(self, node):
        module = node.module or ""
        self.check_module(node, module)
        for a in node.names:
            full = f"{module}.{a.name}"
            self.aliases[a.asname or a.name] = full
            if full in MODULES:
                self.check_module(node, full)
            elif full in NAMES:
                self.report(node, f"from {module} import {a.name}", NAMES[full], "name")

    def check_module(self, node, name):
        for module, added in MODULES.items():
            if name == module or name.startswith(module + "."):
                self.report(node, f"import {module}", added, "import")

    # --- names, methods, keywords ---
    def visit_Attribute(self, node):
        name = self.qualname(node)
        if name in NAMES:
            self.report(node, name, NAMES[name], "name")
        elif node.attr in METHODS:
            self.report(node, f".{node.attr}()", METHODS[node.attr], "name")
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in NAMES and node.id not in self.aliases:  # builtins
            self.report(node, node.id, NAMES[node.id], "name")

    def visit_Call(self, node):
        name = self.qualname(node.func)
        method = node.func.attr if isinstance(node.func, ast.Attribute) else None
        for k in node.keywords:
            added = KEYWORDS.get((name, k.arg)) or KEYWORDS.get((method, k.arg))
            if added:
                self.report(k.value, f"{name or method}({k.arg}=)", added, "keyword")
        self.generic_visit(node)

    # --- forms that parse as 3.6 but do not run there ---
    def visit_BinOp(self, node):
        if isinstance(node.op, ast.BitOr) and any(self.is_dict(side) for side in (node.left, node.right)):
            self.report(node, "dict | dict", V39, "all")
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        if isinstance(node.op, ast.BitOr) and self.is_dict(node.value):
            self.report(node, "dict |= dict", V39, "all")
        self.generic_visit(node)

    def is_dict(self, node):
        if isinstance(node, (ast.Dict, ast.DictComp)):
            return True
        return isinstance(node, ast.Call) and self.qualname(node.func) in ("dict", "os.environ.copy") or \
            self.qualname(node) == "os.environ"

    def visit_Subscript(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in BUILTIN_GENERICS and node.value.id not in self.aliases:
            self.report(node, f"{node.value.id}[...] as a type", V39, "all")
        if isinstance(node.slice, ast.Tuple) and any(isinstance(e, ast.Starred) for e in node.slice.elts):
            self.report(node, "a[*b]", V311, "all")
        self.generic_visit(node)

    def annotation(self, node):
        if node is not None:
            for sub in ast.walk(node):
                if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr):
                    self.report(sub, "X | Y as a type", V310, "all")

    def visit_FunctionDef(self, node):
        for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs + [node.args.vararg, node.args.kwarg]:
            self.annotation(a and a.annotation)
        self.annotation(node.returns)
        for d in node.decorator_list:
            target = d.func if isinstance(d, ast.Call) else d
            if self.qualname(target) is None:  # 3.6's grammar: a dotted name, optionally called
                self.report(d, "a decorator that is not a dotted name", V39, "all")
            elif not isinstance(d, ast.Call) and self.qualname(d) == "functools.lru_cache":
                self.report(d, "@lru_cache without ()", V38, "all")
        loops, self.loops = self.loops, []
        self.generic_visit(node)
        self.loops = loops

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        self.annotation(node.annotation)
        self.generic_visit(node)

    def visit_Return(self, node):
        self.unparenthesized_star(node)
        self.generic_visit(node)

    def visit_Yield(self, node):
        self.unparenthesized_star(node)
        self.generic_visit(node)

    def unparenthesized_star(self, node):
        value = node.value
        if isinstance(value, ast.Tuple) and any(isinstance(e, ast.Starred) for e in value.elts):
            if not (ast.get_source_segment(self.source, value) or "").startswith("("):
                self.report(node, "return/yield a, *b without parentheses", V38, "all")

    def visit_For(self, node):
        self.loops.append(True)
        for child in node.body:
            self.visit(child)
        self.loops.pop()
        for child in node.orelse:
            self.visit(child)
        self.visit(node.target)
        self.visit(node.iter)

    visit_AsyncFor = visit_For

    def visit_While(self, node):
        self.visit(node.test)
        self.loops.append(True)
        for child in node.body:
            self.visit(child)
        self.loops.pop()
        for child in node.orelse:
            self.visit(child)

    def visit_Continue(self, node):
        if self.loops and not self.loops[-1]:
            self.report(node, "continue in finally", V38, "all")

    # --- guards ---
    def visit_Try(self, node):
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught.update(self.qualname(t) for t in types if t is not None)
        kinds = {kind for kind, errors in GUARDS.items() if caught & errors}
        self.guarded(kinds, node.body)
        for child in node.handlers + node.orelse:
            self.visit(child)
        self.loops.append(False)
        for child in node.finalbody:
            self.visit(child)
        self.loops.pop()

    def visit_If(self, node):
        test = ast.dump(node.test)
        if "version_info" in test or "hasattr" in test:
            self.guarded({"all"}, node.body)
            for child in node.orelse:
                self.visit(child)
            self.visit(node.test)
        else:
            self.generic_visit(node)


def problems(source, oldest=(3, 6)):
    """[(line, "what (Python X.Y)")] for every use in SOURCE newer than OLDEST; syntax newer than
    OLDEST is a SyntaxError (from ast.parse's feature_version)."""
    tree = ast.parse(source, feature_version=oldest)
    checker = _Checker(source, oldest)
    checker.visit(tree)
    return sorted(set(checker.found))
