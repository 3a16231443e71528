"""Build the optional compiled core, ``fastsock._core``.

All metadata lives in pyproject.toml; this file only decides whether to
compile.  The extension is optional: when ``FASTSOCK_PURE`` is set at build
time, when the interpreter is not CPython, when Cython cannot be imported, or
when the C compiler fails, the package installs with its pure-Python twin
(``fastsock._core_py``) and a banner says so.  ``fastsock.BACKEND`` reports
what a given installation actually loads.
"""
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    # "1", "yes", "true", "on" switch on; unset, "", "0", "no", "false", "off" do not.
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "false", "off")


def _banner(text):
    line = "*" * (len(text) + 4)
    sys.stderr.write("\n%s\n* %s *\n%s\n\n" % (line, text, line))


class optional_build_ext(build_ext):
    """build_ext that turns a failed compile into a loud warning, not an error."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # DistutilsPlatformError and friends
            self._failed(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # CCompilerError, DistutilsExecError, ...
            self._failed(exc)
        else:
            _banner("Accelerated build: fastsock._core compiled")

    def _failed(self, exc):
        _banner("WARNING: fastsock._core failed to compile (%s); "
                "installing the pure-Python backend" % (exc,))


def extensions():
    if _flag("FASTSOCK_PURE"):
        _banner("Pure Python build (FASTSOCK_PURE is set)")
        return []
    if sys.implementation.name != "cpython":
        _banner("Pure Python build (%s is not CPython)" % sys.implementation.name)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _banner("Pure Python build (Cython is not installed)")
        return []
    directives = {"language_level": "3", "embedsignature": True}
    macros = []
    if _flag("FASTSOCK_CYTHON_TRACE"):
        directives.update(linetrace=True, profile=True)
        macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
    ext = Extension(
        "fastsock._core",
        ["src/fastsock/_core.pyx"],
        include_dirs=["src/fastsock"],
        define_macros=macros,
        depends=[
            "src/fastsock/_posix.pxd",
            "src/fastsock/_core_loop.pxi",
            "src/fastsock/_core_io.pxi",
            "src/fastsock/_core_stats.pxi",
            "src/fastsock/_core_green.pxi",
            "src/fastsock/_fastsock_epoll.h",
            "src/fastsock/_fastsock_compat.h",
        ],
    )
    return cythonize(
        [ext],
        compiler_directives=directives,
        annotate=_flag("FASTSOCK_CYTHON_ANNOTATE"),
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})
