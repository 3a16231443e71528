"""API parity: the two cores with each other, and fastsock with socketserver."""
import inspect
import os
import socket
import socketserver
import sys

import pytest

import fastsock
from fastsock import _backend

# CPython 3.13's socketserver.__all__, under the same platform conditions.
STDLIB_313_ALL = {"BaseServer", "TCPServer", "UDPServer", "ThreadingUDPServer",
                  "ThreadingTCPServer", "BaseRequestHandler", "StreamRequestHandler",
                  "DatagramRequestHandler", "ThreadingMixIn"}
if hasattr(os, "fork"):
    STDLIB_313_ALL |= {"ForkingUDPServer", "ForkingTCPServer", "ForkingMixIn"}
if hasattr(socket, "AF_UNIX"):
    STDLIB_313_ALL |= {"UnixStreamServer", "UnixDatagramServer",
                       "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer"}
    if hasattr(os, "fork"):
        STDLIB_313_ALL |= {"ForkingUnixStreamServer", "ForkingUnixDatagramServer"}


# Defaults fastsock changes on purpose (each documented in docs/guide.md).
DELIBERATE_DIFFERENCES = {
    "request_queue_size": socket.SOMAXCONN,   # the stdlib's 5 refuses bursts
}


def public(obj):
    return {name for name in dir(obj) if not name.startswith("_")}


def test_all_is_the_313_api():
    assert set(fastsock.__all__) == STDLIB_313_ALL
    assert len(fastsock.__all__) == len(set(fastsock.__all__))
    for name in fastsock.__all__:
        assert getattr(fastsock, name).__module__.startswith("fastsock")


def test_running_stdlib_is_a_subset():
    assert set(socketserver.__all__) <= set(fastsock.__all__)


def signature(obj):
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


@pytest.mark.parametrize("name", sorted(socketserver.__all__) + ["_SocketWriter"])
def test_class_matches_stdlib(name):
    ours, theirs = getattr(fastsock, name), getattr(socketserver, name)
    if name == "_SocketWriter":
        # The stdlib's is a Python class; ours is the core's writer.
        assert signature(ours) is None or list(signature(ours).parameters)[:1] == ["sock"]
        return
    # Same shape of inheritance, by class name.
    assert [c.__name__ for c in ours.__mro__] == [c.__name__ for c in theirs.__mro__]
    dunders = {a for a in ("__init__", "__enter__", "__exit__") if hasattr(theirs, a)}
    for attr in sorted(public(theirs) | dunders):
        assert hasattr(ours, attr), attr
        mine, stdlib = getattr(ours, attr), getattr(theirs, attr)
        if callable(stdlib):
            assert signature(mine) == signature(stdlib), attr
        elif attr in DELIBERATE_DIFFERENCES:
            assert mine == DELIBERATE_DIFFERENCES[attr], attr
        else:
            assert mine == stdlib, attr


def test_313_additions_exist_on_every_python():
    assert fastsock.TCPServer.allow_reuse_port is False
    assert fastsock.UDPServer.allow_reuse_port is False
    if hasattr(os, "fork") and hasattr(socket, "AF_UNIX"):
        assert fastsock.ForkingUnixStreamServer.__mro__[1:3] == (
            fastsock.ForkingMixIn, fastsock.UnixStreamServer)
        assert fastsock.ForkingUnixDatagramServer.__mro__[1:3] == (
            fastsock.ForkingMixIn, fastsock.UnixDatagramServer)


def test_servers_are_plain_python_classes():
    for name in fastsock.__all__:
        cls = getattr(fastsock, name)
        assert "__slots__" not in vars(cls)
        cls.some_user_attribute = 1   # class attributes can be set at run time
        del cls.some_user_attribute


@pytest.mark.c_extension
def test_twins_have_the_same_api():
    compiled, pure = _backend.load("cython"), _backend.load("python")
    assert sorted(compiled.__all__) == sorted(pure.__all__)
    for name in pure.__all__:
        c_obj, p_obj = getattr(compiled, name), getattr(pure, name)
        assert type(c_obj) is type(p_obj) or (callable(c_obj) and callable(p_obj)), name
        if isinstance(p_obj, int):
            assert c_obj == p_obj, name
            continue
        if not callable(p_obj):
            continue
        if isinstance(p_obj, type):
            assert public(c_obj) == public(p_obj), name
            for attr in sorted(public(p_obj)):
                c_attr, p_attr = getattr(c_obj, attr), getattr(p_obj, attr)
                if callable(p_attr):
                    assert signature(c_attr) == signature(p_attr), (name, attr)
                assert (c_attr.__doc__ or "").strip() or not (p_attr.__doc__ or "").strip(), \
                    (name, attr, "undocumented in the compiled core")
            assert signature(c_obj) == signature(p_obj), name
        else:
            assert signature(c_obj) == signature(p_obj), name
        assert (c_obj.__doc__ or "").strip() and (p_obj.__doc__ or "").strip(), name


def stub_names(path):
    import ast
    with open(path) as stub:
        tree = ast.parse(stub.read())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            methods = set()
            for base in node.bases:  # the shared _Stream base
                if isinstance(base, ast.Name) and base.id == "_Stream":
                    methods |= names.get("_Stream", set())
            methods |= {n.name for n in node.body if isinstance(n, ast.FunctionDef)
                        and not n.name.startswith("_")}
            names[node.name] = methods
        elif isinstance(node, ast.ClassDef):
            names[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)
                                and not n.name.startswith("_")}
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = None
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = None
    names.pop("_Stream", None)
    return names


def test_stub_covers_both_twins(core):
    # One stub, _core.pyi, describes the compiled core; the pure twin must
    # fit it too (type checkers read _core_py.py itself).
    path = os.path.join(os.path.dirname(fastsock.__file__), "_core.pyi")
    names = stub_names(path)
    assert set(names) == set(core.__all__)
    for name, methods in names.items():
        if methods is not None:
            assert methods == public(getattr(core, name)), name
    assert os.path.exists(os.path.join(os.path.dirname(fastsock.__file__), "py.typed"))
