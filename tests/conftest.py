"""Shared fixtures: every behaviour test runs once per backend.

``core`` is the core module (``fastsock._core`` or ``fastsock._core_py``) and
``ss`` a socketserver-like namespace whose servers and handlers run on that
core, so a test written once against ``ss`` covers both backends in one
session.  The compiled parameter carries the ``c_extension`` mark; run with
``--no-c-extensions`` where nothing was compiled (it is never skipped
silently: without that flag a missing extension is an error).
"""
import gc
import os
import threading
import time
import types

import pytest

import fastsock
from fastsock import _backend

BACKENDS = ("cython", "python")


def pytest_addoption(parser):
    parser.addoption("--no-c-extensions", action="store_true",
                     help="deselect the tests of the compiled backend")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--no-c-extensions"):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("c_extension") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def make_namespace(core):
    """The socketserver API with every server and handler bound to *core*."""
    ns = types.SimpleNamespace()
    for name in list(fastsock.__all__) + ["_SocketWriter"]:
        obj = getattr(fastsock, name)
        if isinstance(obj, type) and (
                ("_core" in dir(obj) and obj._core is not core)
                or ("_sendto" in dir(obj) and obj._sendto is not core.sendto)):
            attrs = {"__module__": obj.__module__,
                     "__qualname__": obj.__qualname__}
            if "_core" in dir(obj):
                attrs["_core"] = core
            if "_sendto" in dir(obj):       # DatagramRequestHandler's reply
                attrs["_sendto"] = staticmethod(core.sendto)
            obj = type(obj.__name__, (obj,), attrs)
        setattr(ns, name, obj)
    ns._SocketWriter = core.SocketWriter
    ns.core = core
    return ns


@pytest.fixture(scope="session",
                params=[pytest.param("cython", marks=pytest.mark.c_extension), "python"])
def backend_name(request):
    return request.param


@pytest.fixture(scope="session")
def core(backend_name):
    return _backend.load(backend_name)


@pytest.fixture(scope="session")
def ss(core):
    return make_namespace(core)


def open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves file descriptors or threads behind."""
    fds = open_fds()
    threads = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        gc.collect()
        # The write-coalescing flusher is one daemon thread per process.
        extra_threads = [t for t in threading.enumerate()
                         if t not in threads and t.is_alive()
                         and t.name != "fastsock-flusher"]
        extra_fds = open_fds() - fds
        if not extra_threads and not extra_fds:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    details = {fd: os.readlink("/proc/self/fd/" + fd)
               for fd in extra_fds if os.path.exists("/proc/self/fd/" + fd)}
    pytest.fail("leaked fds %r, threads %r" % (details, extra_threads))


# -- TLS: a certificate made at test time (test_tls, test_write_deadline) --

@pytest.fixture(scope="session")
def cert_files(tmp_path_factory):
    """(certfile, keyfile): a self-signed EC certificate for localhost and
    127.0.0.1, valid for a day, made with ``cryptography``."""
    import datetime
    import ipaddress
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from helpers import HOST

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fastsock test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


@pytest.fixture
def contexts(cert_files):
    """(server_context, client_context) trusting the test certificate."""
    import ssl
    certfile, keyfile = cert_files
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certfile, keyfile)
    client = ssl.create_default_context(cafile=certfile)
    return server, client
