"""``fastsock.install()`` / ``fastsock.uninstall()``: run the stdlib's servers on fastsock.

What ``install()`` changes, all of it undone by ``uninstall()``:

1. ``sys.modules["socketserver"]`` becomes ``fastsock``, so every later
   ``import socketserver`` (including the stdlib's own, in ``http.server``,
   ``xmlrpc.server``, ``wsgiref.simple_server``, ``logging.config``, ...)
   gets fastsock's classes.
2. Modules already imported that use socketserver -- the stdlib server
   modules above, and any other module given to ``install(modules=...)`` --
   are patched in place: their global names bound to the stdlib
   ``socketserver`` module or to its classes are rebound to fastsock's, and
   their classes that derive directly from a stdlib socketserver class are
   re-based onto the fastsock class of the same name.
3. ``http.server`` is imported (on fastsock) if it was not yet, and
   ``BaseHTTPRequestHandler.parse_request`` / ``date_time_string`` become
   fastsock's exactly equivalent, faster versions (``fastsock._http_fast``:
   header parsing without the email parser for plain header blocks, the
   ``Date`` text formatted once a second).  Subclasses that override them
   keep their own; ``http.client`` itself is not touched.

The one rule: call ``install()`` early, before servers are created.  A server
object created before ``install()`` keeps running on the stdlib; classes
created by user code before ``install()`` are only converted when their
module is named in ``modules``.
"""
import socketserver as _stdlib
import sys
import threading

# The stdlib modules whose servers and handlers derive from socketserver.
STDLIB_SERVER_MODULES = ("http.server", "xmlrpc.server", "wsgiref.simple_server",
                         "logging.config")

_lock = threading.Lock()
_undo = []          # callables that reverse install(), newest last
_installed = False


def _class_map(src, dst):
    """{class in module src: class of the same name in module dst}"""
    mapping = {}
    for name in dir(src):
        src_obj, dst_obj = getattr(src, name), getattr(dst, name, None)
        if isinstance(src_obj, type) and isinstance(dst_obj, type) and src_obj is not dst_obj:
            mapping[src_obj] = dst_obj
    return mapping


def _convert(module, src, dst, record):
    """Rebind *module*'s globals from module *src* (and its classes) to *dst*,
    and re-base the module's own classes the same way."""
    mapping = _class_map(src, dst)
    namespace = vars(module)
    for name, value in list(namespace.items()):
        replacement = None
        if value is src:
            replacement = dst
        elif isinstance(value, type):
            if value in mapping:
                replacement = mapping[value]
            elif value.__module__ == module.__name__:
                _rebase(value, mapping, record)
        if replacement is not None:
            namespace[name] = replacement
            if record:
                _undo.append(lambda ns=namespace, n=name, v=value: ns.__setitem__(n, v))


def _rebase(cls, mapping, record):
    bases = cls.__bases__
    new_bases = tuple(mapping.get(base, base) for base in bases)
    if new_bases != bases:
        cls.__bases__ = new_bases
        if record:
            _undo.append(lambda c=cls, b=bases: setattr(c, "__bases__", b))


def _accelerate_http_server():
    """Put fastsock's HTTP request parsing on http.server's handler base."""
    import http.server  # on fastsock: sys.modules["socketserver"] is set
    from . import _http_fast
    cls = http.server.BaseHTTPRequestHandler
    for name, fast in _http_fast.FAST_METHODS.items():
        original = cls.__dict__.get(name)
        if original is _http_fast.STDLIB_METHODS[name]:
            setattr(cls, name, fast)
            _undo.append(lambda c=cls, n=name, o=original: setattr(c, n, o))


def install(modules=()):
    """Make ``socketserver`` mean fastsock, here and in the stdlib's servers.

    *modules* are extra already-imported modules (objects or dotted names)
    to convert the same way as the stdlib server modules.  Calling it again
    converts further modules.  Returns None.
    """
    global _installed
    import fastsock
    with _lock:
        if not _installed:
            previous = sys.modules.get("socketserver")
            sys.modules["socketserver"] = fastsock
            _undo.append(lambda p=previous: sys.modules.__setitem__("socketserver", p))
            _installed = True
            _accelerate_http_server()
        targets = [sys.modules.get(name) for name in STDLIB_SERVER_MODULES]
        for module in modules:
            if isinstance(module, str):
                module = sys.modules[module]
            targets.append(module)
        for module in targets:
            if module is not None:
                _convert(module, _stdlib, fastsock, record=True)


def uninstall():
    """Undo install(): the stdlib socketserver, classes and names as before.

    Stdlib server modules first imported while installed were built on
    fastsock; they are converted back to the stdlib classes too.
    """
    global _installed
    import fastsock
    with _lock:
        while _undo:
            _undo.pop()()
        _installed = False
        for name in STDLIB_SERVER_MODULES:
            module = sys.modules.get(name)
            if module is not None:
                _convert(module, fastsock, _stdlib, record=False)


def installed():
    """True between install() and uninstall()."""
    return _installed
