"""Faster, exactly equivalent pieces of ``http.server``'s request handling.

Used by ``fastsock.http.accelerate_handler`` (handler classes served by
``fastsock.http.HTTPServer``) and by ``fastsock.install()`` (which puts them
on ``http.server.BaseHTTPRequestHandler`` until ``uninstall()``).  Nothing
here touches ``http.client`` or ``email``: HTTP *clients* in the same
process are unaffected.

``parse_headers(fp, _class)``
    ``http.client.parse_headers`` without ``email.parser`` for the common
    case.  The header lines are read exactly as the stdlib reads them (the
    same ``readline(_MAXLINE + 1)`` calls, the same ``LineTooLong`` /
    ``HTTPException`` with the same messages, limits read from
    ``http.client`` at each call).  When every line is a plain
    ``name: value`` line of printable ASCII (tabs allowed in the value),
    the block ends with a blank line or EOF, no ``Content-Type`` names a
    ``multipart`` or ``message`` type and the class is ``HTTPMessage``
    itself, the message is built directly: the same ``_headers`` list and
    ``_payload`` (``''``) the email parser would produce.  Anything else
    -- continuation lines, a ``From `` line, control or non-ASCII bytes,
    a line without a colon, a custom ``MessageClass`` -- goes to the
    stdlib's email parser with the same lines.

``parse_request``
    The stdlib's own ``BaseHTTPRequestHandler.parse_request`` (its code
    object, so every Python version keeps its own request-line rules),
    run with ``http.client.parse_headers`` resolved to the function above.
    A ``http.client.parse_headers`` replaced by the user at run time is
    still honoured.

``date_time_string(timestamp=None)``
    ``email.utils.formatdate(timestamp, usegmt=True)``, remembered for the
    current second: every response formats its ``Date`` header, and the
    text only changes once a second.
"""
import email.parser
import email.utils
import http.client as _client
import http.server as _server
import re
import time
import types

__all__ = ["parse_headers", "parse_request", "date_time_string", "FAST_METHODS",
           "STDLIB_METHODS"]

_stdlib_parse_headers = _client.parse_headers
_stdlib_formatdate = email.utils.formatdate
_Handler = _server.BaseHTTPRequestHandler

#: the stdlib's own methods, captured at import (before any patching)
STDLIB_METHODS = {
    "parse_request": _Handler.__dict__["parse_request"],
    "date_time_string": _Handler.__dict__["date_time_string"],
}

# A plain header line: a name of printable ASCII without ':' (what the email
# parser's headerRE accepts, less the empty name), ':', optional blanks,
# then a value of printable ASCII and tabs, ended by CRLF or LF.  No other
# CR, no vertical tab/form feed/0x1c-0x1e/0x85 (the parser splits lines on
# those), nothing non-ASCII.
_plain_line = re.compile(r"([!-9;-~]+):[ \t]*([\t -~]*?)\r?\n").fullmatch
_ENDS = (b"\r\n", b"\n", b"")


def _email_parse(lines, _class):
    """What the stdlib does with the lines it has read (3.10-3.13 alike)."""
    text = b"".join(lines).decode("iso-8859-1")
    return email.parser.Parser(_class=_class).parsestr(text)


def parse_headers(fp, _class=_client.HTTPMessage):
    """``http.client.parse_headers``, exactly, without the email parser
    for plain header blocks."""
    client = _client
    if client.parse_headers is not _stdlib_parse_headers:
        return client.parse_headers(fp, _class)     # replaced: use theirs
    maxline = client._MAXLINE
    maxheaders = client._MAXHEADERS
    lines = []
    readline = fp.readline
    while True:
        line = readline(maxline + 1)
        if len(line) > maxline:
            raise client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > maxheaders:
            raise client.HTTPException("got more than %d headers" % maxheaders)
        if line in _ENDS:
            break
    if _class is not client.HTTPMessage:
        return _email_parse(lines, _class)
    headers = []
    for i in range(len(lines) - 1):
        match = _plain_line(lines[i].decode("iso-8859-1"))
        if match is None:
            return _email_parse(lines, _class)
        name, value = match.groups()
        if name.lower() == "content-type":
            kind = value.lower()
            if "multipart" in kind or "message" in kind:
                return _email_parse(lines, _class)
        headers.append((name, value))
    msg = _class()
    msg._headers = headers
    msg._payload = ""
    return msg


class _Namespace:
    """A module stand-in: some names replaced, every other one the module's."""

    def __init__(self, module, **replaced):
        self.__dict__.update(replaced)
        self._module = module

    def __getattr__(self, name):
        return getattr(self._module, name)


def _with_fast_parse_headers(function):
    import http
    namespace = dict(function.__globals__)
    namespace["http"] = _Namespace(http, client=_Namespace(_client, parse_headers=parse_headers))
    fast = types.FunctionType(function.__code__, namespace, function.__name__,
                              function.__defaults__, function.__closure__)
    fast.__kwdefaults__ = function.__kwdefaults__
    fast.__qualname__ = function.__qualname__
    fast.__doc__ = function.__doc__
    fast.__module__ = function.__module__
    fast.__fastsock__ = True
    return fast


parse_request = _with_fast_parse_headers(STDLIB_METHODS["parse_request"])

_date = (None, None)     # (whole second, formatted) -- replaced atomically


def date_time_string(self, timestamp=None):
    """Return the current date and time formatted for a message header."""
    global _date
    if timestamp is None:
        timestamp = time.time()
    formatdate = email.utils.formatdate
    if formatdate is not _stdlib_formatdate or type(timestamp) not in (float, int):
        return formatdate(timestamp, usegmt=True)
    if not 0 <= timestamp < 1e11:       # also NaN
        return formatdate(timestamp, usegmt=True)
    second = int(timestamp)
    if timestamp - second >= 0.999999:
        # formatdate rounds to microseconds: this may be the next second.
        return formatdate(timestamp, usegmt=True)
    cached_second, text = _date
    if cached_second != second:
        text = formatdate(timestamp, usegmt=True)
        _date = (second, text)
    return text


date_time_string.__fastsock__ = True
date_time_string.__qualname__ = STDLIB_METHODS["date_time_string"].__qualname__

#: name -> fastsock's replacement for the stdlib method of that name
FAST_METHODS = {
    "parse_request": parse_request,
    "date_time_string": date_time_string,
}
