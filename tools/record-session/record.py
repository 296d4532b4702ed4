#!/usr/bin/env python3
"""Records real terminal sessions on a pty as golden data for screen tests.

Each case runs a program on a fresh pty of a fixed size with a clean
environment (TERM=xterm-256color, no rc files), types a scripted sequence of
keys, waits for the output to settle after each step and stores the raw
output as crates/termstream/tests/golden/<case>/output.bin next to a
meta.json. screen.txt (the expected visible text) is produced separately by
the Rust golden test with TERMSTREAM_BLESS=1 and must be reviewed by hand.

Usage: tools/record-session/record.py [CASE ...]   (default: all cases)
"""

import fcntl
import json
import os
import pathlib
import select
import shutil
import signal
import struct
import sys
import tempfile
import termios
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "crates" / "termstream" / "tests" / "golden"

DEMO_C = """#include <stdio.h>

/* A small program for the recording. */
static int square(int x) {
    return x * x;
}

int main(void) {
    const char *greeting = "hello, world";
    for (int i = 0; i < 10; i++) {
        printf("%s %d\\n", greeting, square(i));
    }
    return 0;
}
"""

PS1 = r"\[\e[1;32m\]rec@termstream\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ "
BASH = ["bash", "--norc", "--noprofile", "-i"]
VIM = ["vim", "-u", "NONE", "-N", "-i", "NONE", "-n",
       "-c", "filetype on", "-c", "syntax on", "-c", "set laststatus=2 ruler"]

COLORS = (
    r"printf '\e[1mbold\e[0m \e[4munderline\e[0m \e[7minverse\e[0m \e[3mitalic\e[0m"
    r" \e[2mdim\e[0m \e[9mstrike\e[0m\n'; "
    r"for i in 16 52 88 124 160 196 202 208 214 220 226; do printf '\e[38;5;%sm#%s\e[0m ' $i $i; done; echo; "
    r"for i in 17 18 19 20 21 27 33 39 45 51; do printf '\e[48;5;%sm %s \e[0m' $i $i; done; echo; "
    r"for r in 0 64 128 192 255; do printf '\e[38;2;%s;100;200m\e[48;2;20;%s;40mTC%s\e[0m ' $r $r $r; done; echo; "
    r"printf '\e[1;4;31mbold-underline-red\e[0m \e[7;32minverse-green\e[0m \e[95mbright\e[0m\n'; "
    r"printf 'CJK: \u6f22\u5b57\u304b\u306a\ud55c\uae00 | emoji: \U0001F600\U0001F680\U0001F44D end\n'"
)

REGION = (
    r"clear; for i in $(seq 1 4); do echo header $i; done; "
    r"printf '\e[5;15r\e[15;1H'; "
    r"for i in $(seq 1 30); do printf '\e[3%dmregion line %d\e[0m\n' $((i % 7 + 1)) $i; done; "
    r"printf '\e[24;1Hfooter (outside the region)\e[12;5H'"
)

COMBINING = (
    r"clear; printf 'cafe\u0301 nai\u0308ve a\u0300 n\u0303o|end\n'; "
    r"printf '\e[1;31mre\u0301sume\u0301\e[0m|\n'; "
    r"printf '%*s' 18 ''; printf 'xe\u0301yz\n'; "
    r"printf 'last: o\u0302'"
)

CLUSTERS = (
    r"clear; printf 'e\u0353 q\u0301 a\u0301\u0353|end\n'; "
    r"printf '\e[1;32mx\u0353\u0353\e[0m|\n'; "
    r"printf '%*s' 19 ''; printf 'm\u0353yz\n'; "
    r"printf 'last: z\u0353'"
)

# Each case: size, program, the files it needs and its steps. A step is
# either keys to type (str) or ("sleep", seconds).
CASES = {
    "vim-visual": {
        "cols": 80, "rows": 24, "argv": VIM + ["demo.c"],
        "description": "vim -u NONE with C syntax colours: a line added in insert mode, "
                       "then a visual-line selection of three lines; still inside vim "
                       "(alternate screen active).",
        "steps": [("sleep", 1.0), "ggO// edited in the recording\x1b", "6GVjj"],
    },
    "colors": {
        "cols": 120, "rows": 40, "argv": BASH,
        "description": "bash with a coloured prompt, ls --color=always, SGR bold/underline/"
                       "inverse/italic/dim/strike, 256-colour and truecolor fg/bg, wide CJK "
                       "characters and emoji.",
        "steps": ["ls --color=always -F\r", COLORS + "\r"],
    },
    "seq-5000": {
        "cols": 80, "rows": 24, "argv": BASH,
        "description": "seq 1 5000 at a bash prompt: long scrollback beyond the 1000-line limit.",
        "steps": ["seq 1 5000\r"],
    },
    "scroll-region": {
        "cols": 80, "rows": 24, "argv": ["bash", "--norc", "--noprofile", "-c",
                                         REGION + "; sleep 30"],
        "description": "Header lines, then DECSTBM 5;15 and 30 coloured lines scrolled inside "
                       "the region, a footer below it; the region stays set and the cursor "
                       "inside it.",
        "steps": [],
    },
    "combining": {
        "cols": 20, "rows": 6, "argv": ["bash", "--norc", "--noprofile", "-c",
                                        COMBINING + "; sleep 30"],
        "description": "Decomposed accents (e + U+0301, i + U+0308, a + U+0300, n + U+0303, "
                       "o + U+0302): each mark joins the previous cell, in colour, across "
                       "the last column's pending wrap, and with the cursor right after one.",
        "steps": [],
    },
    "combining-clusters": {
        "cols": 20, "rows": 6, "argv": ["bash", "--norc", "--noprofile", "-c",
                                        CLUSTERS + "; sleep 30"],
        "description": "Combining marks with no precomposed form (e + U+0353, q + U+0301, "
                       "a + U+0301 + U+0353, two marks on one letter): each stays on its "
                       "base cell, in colour, across the last column's pending wrap, and "
                       "with the cursor right after one.",
        "steps": [],
    },
    "vim-exit": {
        "cols": 120, "rows": 40, "argv": BASH,
        "description": "Shell history, then vim entered, edited and quit with :q! (alternate "
                       "screen left, primary screen and scrollback restored), then more output.",
        "steps": ["echo before vim; seq 1 60\r",
                  "vim -u NONE -N -i NONE -n -c 'syntax on' demo.c\r", ("sleep", 1.0),
                  "3Gdd", ":q!\r", "echo after vim\r"],
    },
}


def set_size(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def drain(fd, out, quiet=0.6, limit=20.0):
    """Reads until the program has been silent for `quiet` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], quiet)
        if not ready:
            return
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        out.extend(data)


def record(name, case):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="termstream-rec-"))
    (workdir / "demo.c").write_text(DEMO_C)
    (workdir / "notes").mkdir()
    (workdir / "run.sh").write_text("#!/bin/sh\necho run\n")
    (workdir / "run.sh").chmod(0o755)
    (workdir / "link").symlink_to("demo.c")
    env = {
        "TERM": "xterm-256color", "HOME": str(workdir), "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PS1": PS1, "SHELL": "/bin/bash",
        "COLUMNS": str(case["cols"]), "LINES": str(case["rows"]),
    }
    pid, fd = os.forkpty()
    if pid == 0:
        os.chdir(workdir)
        set_size(0, case["cols"], case["rows"])
        os.execvpe(case["argv"][0], case["argv"], env)
    set_size(fd, case["cols"], case["rows"])
    out = bytearray()
    drain(fd, out)
    for step in case["steps"]:
        if isinstance(step, tuple):
            time.sleep(step[1])
            drain(fd, out, quiet=0.2)
            continue
        os.write(fd, step.encode())
        drain(fd, out)
    drain(fd, out, quiet=1.0)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(fd)
    shutil.rmtree(workdir, ignore_errors=True)

    target = GOLDEN / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "output.bin").write_bytes(bytes(out))
    meta = {"cols": case["cols"], "rows": case["rows"], "scrollback": 1000,
            "description": case["description"]}
    (target / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{name}: {len(out)} bytes")


def main():
    names = sys.argv[1:] or list(CASES)
    for name in names:
        record(name, CASES[name])


if __name__ == "__main__":
    main()
