#!/usr/bin/env python3
"""Fetches the crates of brume-crates.inc with BitBake's own fetcher and builds brume
against them, offline and --frozen, the way oe-core's cargo class does in a real build.

  1. `bb.fetch2.Fetch` (the `crate://` fetcher, bb/fetch2/crate.py) downloads every
     `crate://crates.io/NAME/VERSION` of the .inc into target/yocto-dl/ and verifies it
     against its `SRC_URI[NAME-VERSION.sha256sum]` (BitBake's checksum check, with
     BB_STRICT_CHECKSUM: a missing checksum is an error too);
  2. `Fetch.unpack` writes them like do_unpack: `cargo_home/bitbake/NAME-VERSION/` with a
     `.cargo-checksum.json` each (target/yocto-vendor/);
  3. `cargo build --release --frozen --offline -p brume --target aarch64-unknown-linux-gnu`
     with a CARGO_HOME whose config replaces crates.io with that directory (as
     cargo_common.bbclass does), CARGO_TARGET_DIR=target/yocto-build.

Run from tests/yocto/run.sh with the venv's python (installs bitbake-setup, which ships
BitBake's `bb` library, into that venv if missing). Prints PASS:/FAIL: lines.
Environment: CARGO_BUILD_JOBS (default 2).
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
INC = os.path.join(ROOT, "yocto", "meta-brume", "recipes-multimedia", "brume", "brume-crates.inc")
TARGET = os.path.join(ROOT, "target")
DL_DIR = os.path.join(TARGET, "yocto-dl")
VENDOR = os.path.join(TARGET, "yocto-vendor")
CARGO_HOME = os.path.join(TARGET, "yocto-cargo-home")
BUILD_DIR = os.path.join(TARGET, "yocto-build")
TRIPLE = "aarch64-unknown-linux-gnu"
LINKER = "aarch64-linux-gnu-gcc"
# Pinned: the `bb` library is BitBake's; bump on purpose.
BB_REQ = "bitbake-setup==2.19.0"


def say(kind, msg):
    print(f"{kind}: {msg}", flush=True)


def ensure_bb():
    try:
        import bb.fetch2  # noqa: F401
        return True
    except ImportError:
        pass
    for i in range(3):
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", BB_REQ])
        if r.returncode == 0:
            # A fresh interpreter sees the new package (this one cached the failed import).
            os.execv(sys.executable, [sys.executable] + sys.argv)
        time.sleep(5 * (i + 1))
    try:
        import bb.fetch2  # noqa: F401
        return True
    except ImportError as e:
        say("FAIL", f"cannot import bb.fetch2 after pip install {BB_REQ}: {e}")
        return False


def parse_inc(text):
    """SRC_URI entries and SRC_URI[...] flags, as BitBake would read them."""
    body = re.search(r'SRC_URI \+= "(.*?)"', text, re.S).group(1)
    urls = body.replace("\\\n", " ").split()
    flags = dict(re.findall(r'^SRC_URI\[([^\]]+)\]\s*=\s*"([^"]*)"', text, re.M))
    return urls, flags


def datastore(urls, flags, workdir):
    import bb.data
    d = bb.data.init()
    d.setVar("DL_DIR", DL_DIR)
    d.setVar("PN", "brume")
    d.setVar("PV", "git")
    d.setVar("BP", "brume-git")
    d.setVar("WORKDIR", workdir)
    d.setVar("FILESPATH", "")
    d.setVar("FILE", INC)
    d.setVar("BB_STRICT_CHECKSUM", "1")
    d.setVar("BB_CHECK_SSL_CERTS", "1")
    d.setVar("FETCHCMD_wget", "/usr/bin/env wget -t 2 -T 30 --passive-ftp")
    d.setVar("PREMIRRORS", "")
    d.setVar("MIRRORS", "")
    d.setVar("SRC_URI", " ".join(urls))
    for k, v in flags.items():
        d.setVarFlag("SRC_URI", k, v)
    return d


def main():
    ok = True
    if not ensure_bb():
        return 1
    import bb
    import bb.fetch2
    import bb.msg
    import logging
    # Quiet BitBake's notes; warnings and errors still print.
    logging.getLogger("BitBake").setLevel(logging.WARNING)

    text = open(INC).read()
    urls, flags = parse_inc(text)
    crates = [u for u in urls if u.startswith("crate://")]
    os.makedirs(DL_DIR, exist_ok=True)
    workdir = os.path.join(TARGET, "yocto-work")
    os.makedirs(workdir, exist_ok=True)
    d = datastore(urls, flags, workdir)

    # ------------------------------------------------------------ fetch + verify
    t0 = time.monotonic()
    try:
        fetcher = bb.fetch2.Fetch(crates, d)
        fetcher.download()
    except bb.fetch2.BBFetchException as e:
        say("FAIL", f"bb.fetch2 crate:// fetch/verify: {e}")
        return 1
    # Every URL must carry its own sha256 and the file on disk must be the one fetched.
    bad = []
    for u in crates:
        ud = fetcher.ud[u]
        want = ud.method.recommends_checksum(ud) and flags.get(f"{ud.parm['name']}.sha256sum")
        if not want or not os.path.exists(ud.localpath):
            bad.append(u)
    if bad:
        say("FAIL", f"bb.fetch2: {len(bad)} crates without a checksum or a download: {bad[:5]}")
        return 1
    say("PASS", f"bb.fetch2 fetched and sha256-verified {len(crates)} crate:// URIs "
        f"from brume-crates.inc ({time.monotonic() - t0:.1f} s)")

    # ------------------------------------------------------------ unpack (do_unpack)
    t0 = time.monotonic()
    key = hashlib.sha256(text.encode()).hexdigest()
    stamp = os.path.join(VENDOR, ".brume-inc-sha256")
    registry = os.path.join(VENDOR, "cargo_home", "bitbake")
    if not (os.path.isfile(stamp) and open(stamp).read() == key):
        # Unchanged crates keep their mtimes on reruns, so cargo's build cache stays valid.
        shutil.rmtree(VENDOR, ignore_errors=True)
        os.makedirs(VENDOR)
        try:
            fetcher.unpack(VENDOR)
        except bb.fetch2.BBFetchException as e:
            say("FAIL", f"bb.fetch2 unpack: {e}")
            return 1
        open(stamp, "w").write(key)
    missing = [u for u in crates
               if not os.path.isfile(os.path.join(registry, fetcher.ud[u].parm["name"],
                                                  ".cargo-checksum.json"))]
    if missing:
        say("FAIL", f"unpack: {len(missing)} crates without .cargo-checksum.json: {missing[:5]}")
        return 1
    say("PASS", f"unpacked {len(crates)} crates like do_unpack (cargo_home/bitbake, "
        f".cargo-checksum.json each) ({time.monotonic() - t0:.1f} s)")

    # ------------------------------------------------------------ cargo --frozen
    if not shutil.which(LINKER):
        say("FAIL", f"cargo build --frozen for {TRIPLE} skipped: cross linker {LINKER} missing "
            "(tests/cross/run.sh installs it)")
        return 1
    os.makedirs(CARGO_HOME, exist_ok=True)
    with open(os.path.join(CARGO_HOME, "config.toml"), "w") as f:
        # Same source replacement as oe-core's cargo_common.bbclass.
        f.write('[source.bitbake]\ndirectory = "%s"\n\n'
                '[source.crates-io]\nreplace-with = "bitbake"\n\n'
                '[net]\noffline = true\n' % registry)
    env = dict(os.environ, CARGO_HOME=CARGO_HOME, CARGO_TARGET_DIR=BUILD_DIR,
               CARGO_NET_OFFLINE="true")
    env.pop("CARGO_REGISTRIES_CRATES_IO_PROTOCOL", None)
    if "RUSTUP_HOME" not in env and os.path.isdir(os.path.expanduser("~/.rustup")):
        env["RUSTUP_HOME"] = os.path.expanduser("~/.rustup")
    cargo = shutil.which("cargo") or "cargo"
    cmd = [cargo, "build", "--release", "--frozen", "--offline", "-p", "brume",
           "--target", TRIPLE, "-j", os.environ.get("CARGO_BUILD_JOBS", "2")]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    dt = time.monotonic() - t0
    binary = os.path.join(BUILD_DIR, TRIPLE, "release", "brume")
    if r.returncode != 0 or not os.path.isfile(binary):
        print("\n".join(r.stdout.splitlines()[-40:]))
        say("FAIL", f"cargo build --release --frozen --offline -p brume --target {TRIPLE} "
            "against the fetched crates")
        return 1
    say("PASS", f"cargo build --release --frozen --offline -p brume --target {TRIPLE} "
        f"against only the fetched crates ({dt:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
