#!/usr/bin/env python3
"""Sort memcheck's errors from valgrind log files (used by tools/valgrind.sh).

    python tools/vg_report.py [--strict] LOG...

An error is fastsock's when a frame of its stack, or of the stack that
created the memory involved ("Uninitialised value was created by ...",
"Address ... is N bytes after a block alloc'd at ..."; run memcheck with
--track-origins=yes), is in fastsock's compiled core.  Prints every
fastsock error in full, and a count of the others by their first frame.
Exit status: 1 if there is any fastsock error, or with --strict any error at
all (used when the interpreter itself was found memcheck-clean); else 0.
"""
import re
import sys

KINDS = re.compile(r"^(Invalid (read|write|free)|Conditional jump|Use of uninitialised|"
                   r"Syscall param|Mismatched free|Source and destination overlap|"
                   r"Argument '.*' of function|Jump to the invalid address|"
                   r"Process terminating with default action of signal (4|6|7|8|11) )")
OURS = re.compile(r"fastsock|_core\.c:|_core\.cpython|_core_io\.pxi|_core_loop\.pxi")
PREFIX = re.compile(r"^==\d+==\s?")


def records(path):
    """The blocks of a log, split at its blank '==PID==' lines."""
    block = []
    with open(path, errors="replace") as f:
        for line in f:
            text = PREFIX.sub("", line.rstrip("\n"))
            if not text.strip():
                if block:
                    yield block
                block = []
            else:
                block.append(text)
    if block:
        yield block


def first_frame(block):
    for line in block[1:]:
        m = re.search(r"(?:at|by) 0x[0-9A-F]+: (.*)", line)
        if m:
            return m.group(1)
    return "?"


def main(argv):
    strict = "--strict" in argv
    paths = [a for a in argv if a != "--strict"]
    ours, others = [], {}
    for path in paths:
        for block in records(path):
            if not KINDS.match(block[0]):
                continue
            if any(OURS.search(line) for line in block):
                ours.append((path, block))
            else:
                key = "%s at %s" % (block[0], first_frame(block))
                others[key] = others.get(key, 0) + 1
    for path, block in ours:
        print("---- fastsock error in %s" % path)
        print("\n".join(block))
    if others:
        print("%d memcheck error context(s) outside fastsock (the interpreter's own):"
              % len(others))
        for key, count in sorted(others.items(), key=lambda kv: -kv[1])[:15]:
            print("  %4d x %s" % (count, key))
    print("memcheck: %d fastsock error(s), %d other error context(s)" % (len(ours), len(others)))
    return 1 if ours or (strict and others) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
