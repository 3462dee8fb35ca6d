"""The one failure the agent answers with, and the protocol version both sides speak."""

PROTOCOL = 1


class Fail(Exception):
    """A failure the user can fix: a code (the client words the message), a detail (any number
    of lines) and, for a Jupyter that did not start, the end of its log."""

    def __init__(self, code, detail="", log=()):
        Exception.__init__(self, code)
        self.code, self.detail, self.log = code, detail, list(log)
