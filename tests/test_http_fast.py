"""fastsock._http_fast: the faster http.server pieces are exactly the stdlib's.

Differential tests (hypothesis) against ``http.client.parse_headers`` and
``BaseHTTPRequestHandler.parse_request``, reading from the backend's own
``SocketReader`` over a socket pair, with header blocks that mix plain lines
with everything the fast path must hand back to the email parser.
"""
import email.message
import email.utils
import http.client
import http.server
import io
import socket
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import fastsock
from fastsock import _http_fast

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# -- strategies -------------------------------------------------------------

_name_chars = st.sampled_from([c for c in map(chr, range(0x21, 0x7f)) if c != ":"])
_names = st.one_of(
    st.sampled_from(["Host", "Accept", "Content-Type", "content-type", "CONTENT-TYPE",
                     "Content-Length", "Connection", "Expect", "X-A", "From", "x"]),
    st.text(_name_chars, min_size=1, max_size=12))
_value_chars = st.sampled_from([chr(c) for c in range(0x20, 0x7f)] + ["\t"])
_values = st.one_of(
    st.sampled_from(["", " ", "\t", "x", " a b ", "text/plain", "multipart/form-data; b=1",
                     "Message/RFC822", "message/delivery-status", "MULTIPART/x",
                     "100-continue", "close", "keep-alive", "a:b", "  \t v\t "]),
    st.text(_value_chars, max_size=20))
_plain = st.builds(lambda n, sep, v, eol: n + ":" + sep + v + eol,
                   _names, st.sampled_from(["", " ", "  ", "\t", " \t"]), _values,
                   st.sampled_from(["\r\n", "\r\n", "\n"]))
_odd_piece = st.sampled_from([
    " continued\r\n", "\tcontinued\r\n", "From someone\r\n", "From: x\r\n",
    "no colon here\r\n", ": empty name\r\n", "A: b\rc\r\n", "A: b\r\r\n",
    "A: \x0bv\r\n", "A: \x0cv\r\n", "A: \x1cv\r\n", "A: \x85v\r\n", "A: caf\xe9\r\n",
    "A: \x00\r\n", "A: \x7f\r\n", "A b: c\r\n", "A:b\n", "\xe9: x\r\n",
    "Content-Type: multipart/mixed; boundary=zz\r\n", "Content-Type: message/rfc822\r\n",
    "A: b\r", "--zz\r\n", "\r", "A:\r\n"])
_lines = st.lists(st.one_of(_plain, _plain, _plain, _odd_piece), max_size=8)
_ends = st.sampled_from(["\r\n", "\n", "", "\r\n", "\r\nbody after\r\n", "\n\r\n"])


def _block(lines, end):
    return ("".join(lines) + end).encode("iso-8859-1")


# -- helpers ----------------------------------------------------------------


class _Pair:
    """*data* readable from the core's SocketReader (the peer's side shut)."""

    def __init__(self, core, data):
        self.a, self.b = socket.socketpair()
        self.a.sendall(data)
        self.a.shutdown(socket.SHUT_WR)
        self.reader = core.SocketReader(self.b, -1)

    def close(self):
        self.reader.close()
        self.a.close()
        self.b.close()


def _normal(msg):
    """Everything about a parsed message, comparably."""
    if not isinstance(msg, email.message.Message):
        return msg
    payload = msg._payload
    if isinstance(payload, list):
        payload = [_normal(p) for p in payload]
    state = {k: v for k, v in vars(msg).items() if k not in ("_payload", "defects")}
    return (type(msg), state, payload,
            [(type(d), d.args, getattr(d, "line", None)) for d in msg.defects],
            msg.as_string(), msg.items(),
            {k: msg.get_all(k) for k in msg.keys()}, msg.is_multipart(),
            msg.get_content_type())


def _outcome(call):
    try:
        return ("ok", _normal(call()))
    except Exception as exc:  # the same exception, same message, is required
        return ("raised", type(exc), str(exc), exc.args)


def _parse_both(core, data, parser=http.client.parse_headers, **kw):
    results = []
    for parse in (parser, _http_fast.parse_headers):
        pair = _Pair(core, data)
        try:
            outcome = _outcome(lambda: parse(pair.reader, **kw))
            rest = pair.reader.read()
        finally:
            pair.close()
        results.append((outcome, rest))
    return results


# -- parse_headers ------------------------------------------------------------


@SETTINGS
@given(lines=_lines, end=_ends)
@example(lines=["Host: x\r\n"], end="\r\n")
@example(lines=["Host: x\r\n", " folded\r\n"], end="\r\n")
@example(lines=["Content-Type: multipart/form-data; boundary=b\r\n"], end="\r\n")
@example(lines=["From nobody\r\n"], end="\r\n")
@example(lines=["Host: x"], end="")
def test_parse_headers_is_the_stdlib(core, lines, end):
    stdlib, fast = _parse_both(core, _block(lines, end))
    assert fast == stdlib


@SETTINGS
@given(lines=st.lists(st.one_of(_plain, _odd_piece), max_size=9), end=_ends,
       maxline=st.integers(1, 40), maxheaders=st.integers(0, 6))
def test_parse_headers_limits_are_the_stdlib(core, monkeypatch, lines, end, maxline,
                                             maxheaders):
    monkeypatch.setattr(http.client, "_MAXLINE", maxline)
    monkeypatch.setattr(http.client, "_MAXHEADERS", maxheaders)
    stdlib, fast = _parse_both(core, _block(lines, end))
    assert fast == stdlib


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_parse_headers_any_bytes(core, raw):
    stdlib, fast = _parse_both(core, raw)
    assert fast == stdlib


def test_parse_headers_default_limits(core):
    too_long = b"A: " + b"x" * 70000 + b"\r\n\r\n"
    too_many = b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n"
    for data in (too_long, too_many):
        stdlib, fast = _parse_both(core, data)
        assert fast == stdlib
        assert fast[0][0] == "raised"
    assert _parse_both(core, too_many)[1][0][2] == "got more than 100 headers"
    assert _parse_both(core, too_long)[1][0][1] is http.client.LineTooLong


def test_parse_headers_other_message_class(core):
    class Mine(http.client.HTTPMessage):
        pass

    stdlib, fast = _parse_both(core, b"Host: x\r\n\r\n", _class=Mine)
    assert fast == stdlib
    assert fast[0][1][0] is Mine


def test_parse_headers_replaced_by_the_user_is_used(core, monkeypatch):
    calls = []

    def mine(fp, _class=http.client.HTTPMessage):
        calls.append(fp)
        return "theirs"

    monkeypatch.setattr(http.client, "parse_headers", mine)
    pair = _Pair(core, b"Host: x\r\n\r\n")
    try:
        assert _http_fast.parse_headers(pair.reader) == "theirs"
    finally:
        pair.close()
    assert len(calls) == 1


def test_http_client_is_untouched():
    assert http.client.parse_headers is _http_fast._stdlib_parse_headers
    fastsock.install()
    try:
        assert http.client.parse_headers is _http_fast._stdlib_parse_headers
        assert email.utils.formatdate is _http_fast._stdlib_formatdate
    finally:
        fastsock.uninstall()


# -- parse_request --------------------------------------------------------------


class _Probe(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def _run_parse_request(core, method, data, protocol):
    pair = _Pair(core, data)
    handler = _Probe.__new__(_Probe)
    handler.rfile = pair.reader
    handler.wfile = io.BytesIO()
    handler.protocol_version = protocol
    handler.client_address = ("127.0.0.1", 1)
    handler.request_version = None
    try:
        handler.raw_requestline = pair.reader.readline(65537)
        outcome = _outcome(lambda: method(handler))
        seen = {k: _normal(getattr(handler, k, None))
                for k in ("command", "path", "request_version", "requestline",
                          "close_connection", "headers")}
        return outcome, seen, handler.wfile.getvalue(), pair.reader.read()
    finally:
        pair.close()


_request_lines = st.one_of(
    st.sampled_from(["GET / HTTP/1.1\r\n", "GET / HTTP/1.0\r\n", "GET /\r\n",
                     "POST /x HTTP/1.1\r\n", "GET / HTTP/2.0\r\n", "GET / HTTP/1.1 x\r\n",
                     "GET //a HTTP/1.1\r\n", "\r\n", "GET / HTTP/01.1\r\n",
                     "GET / HTTP/1.10\r\n", "BAD\r\n"]),
    st.text(st.sampled_from(list("GET /HTP1.0 \t")), max_size=20).map(lambda s: s + "\r\n"))
_special = st.sampled_from(["Connection: close\r\n", "Connection: keep-alive\r\n",
                            "Connection: Close\r\n", "Expect: 100-continue\r\n",
                            "Expect: 100-Continue\r\n"])


@SETTINGS
@given(request=_request_lines, lines=st.lists(st.one_of(_plain, _odd_piece, _special),
                                               max_size=6),
       end=_ends, protocol=st.sampled_from(["HTTP/1.0", "HTTP/1.1"]))
def test_parse_request_is_the_stdlib(core, monkeypatch, request, lines, end, protocol):
    monkeypatch.setattr(time, "time", lambda: 1700000000.25)
    data = request.encode("iso-8859-1") + _block(lines, end)
    stdlib = _run_parse_request(core, _http_fast.STDLIB_METHODS["parse_request"], data,
                                protocol)
    fast = _run_parse_request(core, _http_fast.parse_request, data, protocol)
    assert fast == stdlib


def test_parse_request_header_limit_response(core, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1700000000.25)
    data = b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(101)) + b"\r\n"
    stdlib = _run_parse_request(core, _http_fast.STDLIB_METHODS["parse_request"], data,
                                "HTTP/1.1")
    fast = _run_parse_request(core, _http_fast.parse_request, data, "HTTP/1.1")
    assert fast == stdlib
    assert b"431" in fast[2] and b"Too many headers" in fast[2]


# -- date_time_string -----------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(stamp=st.one_of(
    st.floats(min_value=0, max_value=4e9),
    st.integers(0, 4 * 10 ** 9),
    st.integers(0, 4 * 10 ** 9).map(lambda s: s + 0.9999995),
    st.integers(0, 4 * 10 ** 9).map(lambda s: s + 0.999999),
    st.integers(0, 4 * 10 ** 9).map(lambda s: s - 1e-7)))
def test_date_time_string_is_the_stdlib(stamp):
    stdlib = _http_fast.STDLIB_METHODS["date_time_string"]
    # twice: computing, then from the per-second memory
    for _ in range(2):
        assert _http_fast.date_time_string(None, stamp) == stdlib(None, stamp)


@pytest.mark.parametrize("stamp", [-1.5, float("nan"), float("inf"), 1e300, True])
def test_date_time_string_unusual_stamps(stamp):
    stdlib = _http_fast.STDLIB_METHODS["date_time_string"]
    assert _outcome(lambda: _http_fast.date_time_string(None, stamp)) == \
        _outcome(lambda: stdlib(None, stamp))


def test_date_time_string_now_follows_the_clock(monkeypatch):
    stdlib = _http_fast.STDLIB_METHODS["date_time_string"]
    for now in (1700000000.1, 1700000000.9, 1700000001.0, 1700000001.5, 1699999999.0):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        assert _http_fast.date_time_string(None) == stdlib(None)


def test_date_time_string_honours_a_replaced_formatdate(monkeypatch):
    monkeypatch.setattr(email.utils, "formatdate", lambda t, usegmt=False: "mine %r" % usegmt)
    assert _http_fast.date_time_string(None, 5.0) == "mine True"


# -- where the fast methods are used ----------------------------------------------


def test_install_uses_them_and_uninstall_restores_the_stdlib():
    cls = http.server.BaseHTTPRequestHandler
    assert cls.__dict__["parse_request"] is _http_fast.STDLIB_METHODS["parse_request"]
    fastsock.install()
    try:
        for name, fast in _http_fast.FAST_METHODS.items():
            assert cls.__dict__[name] is fast
        fastsock.install()      # again: nothing doubles
        assert cls.__dict__["parse_request"] is _http_fast.parse_request
    finally:
        fastsock.uninstall()
    for name, original in _http_fast.STDLIB_METHODS.items():
        assert cls.__dict__[name] is original


def test_accelerate_handler_keeps_user_overrides():
    from fastsock import http as fhttp

    class Theirs(http.server.BaseHTTPRequestHandler):
        def parse_request(self):
            return super().parse_request()

        def date_time_string(self, timestamp=None):
            return "theirs"

    class Plain(http.server.BaseHTTPRequestHandler):
        pass

    try:
        theirs = fhttp.accelerate_handler(Theirs)
        assert theirs.parse_request is Theirs.parse_request
        assert theirs.date_time_string is Theirs.date_time_string
        plain = fhttp.accelerate_handler(Plain)
        assert plain.parse_request is _http_fast.parse_request
        assert plain.date_time_string is _http_fast.date_time_string
    finally:
        fhttp._accelerated.pop(Theirs, None)
        fhttp._accelerated.pop(Plain, None)


def _exchange(address, data):
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.mark.parametrize("how", ["http_server", "install"])
def test_served_requests_see_the_stdlib_headers(core, monkeypatch, how):
    """Through a real server: the handler's headers equal what the stdlib
    parser makes of the same bytes, its own date_time_string is used, and an
    overriding parse_request calling super() works."""
    from fastsock import http as fhttp
    from helpers import HOST, serving
    monkeypatch.setattr(fastsock.StreamRequestHandler, "_core", core)
    monkeypatch.setattr(fastsock.BaseServer, "_core", core)
    seen = []

    class Echo(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append(self.headers)
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Dated(Echo):
        calls = 0

        def parse_request(self):
            Dated.calls += 1
            return super().parse_request()

        def date_time_string(self, timestamp=None):
            return "Someday"

    blocks = [b"Host: a\r\nX:  y \r\n\r\n", b"Host: a\r\nX: y\r\n folded\r\n\r\n",
              b"Host: a\r\nContent-Type: multipart/x; boundary=q\r\n\r\n",
              b"Host: caf\xe9\r\nA:b\n\n"]
    requests = b"".join(b"GET /%d HTTP/1.1\r\n" % i + block for i, block in enumerate(blocks))
    if how == "install":
        fastsock.install()
    try:
        for handler in (Echo, Dated):
            if how == "install":
                server = http.server.HTTPServer((HOST, 0), handler)
            else:
                server = fhttp.HTTPServer((HOST, 0), handler)
            with serving(server):
                reply = _exchange(server.server_address, requests)
            assert reply.count(b"HTTP/1.1 200 OK\r\n") == len(blocks)
            if handler is Dated:
                assert reply.count(b"Date: Someday\r\n") == len(blocks)
                assert Dated.calls == len(blocks)
            else:
                assert b"Date: Someday" not in reply
            assert [_normal(m) for m in seen] == [
                _normal(http.client.parse_headers(io.BytesIO(b))) for b in blocks]
            seen.clear()
    finally:
        if how == "install":
            fastsock.uninstall()
        fhttp._accelerated.pop(Echo, None)
        fhttp._accelerated.pop(Dated, None)
