#!/usr/bin/env python3
"""Finds pipelines in Brume's shell scripts whose last command can exit before reading
all of its input: `head`, `grep -q`/`-m`, `awk … exit`, `sed … q`. Under
`set -o pipefail` the producer then dies of SIGPIPE, the pipeline's status is 141 and
`set -e` (or an `if`) takes the wrong turn, depending on timing and on how much the
producer writes. Read the whole input instead: `awk 'NR == 1'`, `sed -n 1p`,
`awk '/x/ && !n++ {…}'`, or match a captured string (`grep -q x <<<"$(cmd)"`).

    tests/lint-pipes.py [FILE…]     (default: every shell script in the repository)

Prints each finding as FILE:LINE and exits 1 if there is any.
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# A consumer that stops reading early: the command after a `|` (not `||`).
EARLY = [
    (re.compile(r"^head\b"), "head"),
    (re.compile(r"^grep\b[^|]*?\s-[a-zA-Z]*[qm]"), "grep -q/-m"),
    (re.compile(r"^awk\b.*\bexit\b"), "awk … exit"),
    (re.compile(r"^sed\b.*(?:\dq|/q|;\s*q|\bq\s*')"), "sed … q"),
]


def shell_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in out.decode().split("\0"):
        if not name or "node_modules" in name:
            continue
        p = ROOT / name
        if not p.is_file():
            continue
        if p.suffix in (".sh", ".bash"):
            yield p
            continue
        try:
            first = p.open("rb").readline()
        except OSError:
            continue
        if first.startswith(b"#!") and re.search(rb"\b(bash|sh)\b", first):
            yield p


def logical_lines(text):
    """Joins continued lines (trailing `\\` or a trailing `|`), keeping the first line number."""
    buf, start = "", None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.rstrip()
        if start is None:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        if re.search(r"(?<!\|)\|$", stripped):
            buf += stripped + " "
            continue
        yield start, buf + line
        buf, start = "", None
    if buf:
        yield start, buf


def strip_quotes_and_comments(line):
    """Blanks quoted text (so a `|` inside a regex is not a pipe) and drops comments."""
    out, q = [], None
    i = 0
    while i < len(line):
        c = line[i]
        if q:
            if c == "\\" and q == '"' and i + 1 < len(line):
                out.append("__")
                i += 2
                continue
            if c == q:
                q = None
                out.append(c)
            else:
                out.append("_")
        elif c in "'\"":
            q = c
            out.append(c)
        elif c == "#" and (i == 0 or line[i - 1] in " \t;"):
            break
        else:
            out.append(c)
        i += 1
    return "".join(out)


def findings(path):
    text = path.read_text(errors="replace")
    for n, line in logical_lines(text):
        if line.lstrip().startswith("#"):
            continue
        bare = strip_quotes_and_comments(line)
        # Positions of single pipes in the quote-blanked line; the consumer's text is
        # read from the original line (its awk/sed program is inside quotes).
        for m in re.finditer(r"(?<!\|)\|(?![|&])", bare):
            rest = line[m.end():].lstrip()
            for pat, what in EARLY:
                if pat.search(rest):
                    # `head FILE`/`head -c N FILE` reads a file, not the pipe: only a
                    # head that ends the command (or the next pipe) reads stdin.
                    if what == "head":
                        cmd = re.split(r"[|;)&]", strip_quotes_and_comments(rest), maxsplit=1)[0].split()
                        args = [a for a in cmd[1:] if not a.startswith("-") and not a.isdigit()]
                        if args:
                            continue
                    yield n, what, line.strip()
                    break


def main(argv):
    files = [pathlib.Path(a).resolve() for a in argv] or list(shell_files())
    bad = 0
    for f in files:
        for n, what, line in findings(f):
            bad += 1
            print(f"{f.relative_to(ROOT)}:{n}: `{what}` after a pipe can kill its producer (SIGPIPE): {line}")
    print(f"lint-pipes: {len(files)} scripts, {bad} early-exit pipeline(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
