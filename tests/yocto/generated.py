"""The --check / write step shared by the generators of meta-brume's .inc files."""

import difflib
import os
import sys


def check_or_write(inc, root, new, summary, script):
    """With --check: 0 if `inc` already holds `new`, else a diff and 1. Without: writes
    it. `summary` describes the content ("412 crates"), `script` regenerates it."""
    rel = os.path.relpath(inc, root)
    if "--check" in sys.argv[1:]:
        old = open(inc).read() if os.path.exists(inc) else ""
        if old == new:
            print(f"{rel} matches Cargo.lock ({summary})")
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(True), new.splitlines(True), "committed", "regenerated", n=1))
        print(f"{rel} is stale: run {script}")
        return 1
    with open(inc, "w") as f:
        f.write(new)
    print(f"wrote {rel} ({summary})")
    return 0
