#!/usr/bin/env python3
"""Offline checks of the Yocto layer, the kas files and the board profiles.

Run by tests/yocto/run.sh inside its venv (kas and jsonschema importable). Prints one
`PASS: …` or `FAIL: …` line per check; exits 1 if any failed.
"""
import argparse
import glob
import hashlib
import json
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LAYER = os.path.join(ROOT, "yocto", "meta-brume")
KAS_DIR = os.path.join(ROOT, "yocto", "kas")
BOARD_DIR = os.path.join(ROOT, "board")
failures = 0


def result(ok, what):
    global failures
    print(("PASS: " if ok else "FAIL: ") + what)
    if not ok:
        failures += 1


def rel(p):
    return os.path.relpath(p, ROOT)


# ------------------------------------------------------------------ kas files
def check_kas():
    import jsonschema
    import kas
    import yaml

    schema = json.load(open(os.path.join(os.path.dirname(kas.__file__), "schema-kas.json")))
    validator = jsonschema.Draft7Validator(schema) if "draft-07" in schema.get("$schema", "") \
        else jsonschema.validators.validator_for(schema)(schema)
    files = sorted(glob.glob(os.path.join(KAS_DIR, "*.yml")))
    result(len(files) > 0, f"kas files found in {rel(KAS_DIR)}")
    docs = {}
    for f in files:
        doc = yaml.safe_load(open(f))
        docs[f] = doc
        errors = sorted(validator.iter_errors(doc), key=str)
        result(not errors, f"{rel(f)} valid against kas {kas.__version__}'s schema"
               + "".join(f"\n    {e.message}" for e in errors[:5]))

    # kas's own loader: follows includes, injects brume.lock.yml, validates each file.
    import argparse as ap
    from kas.context import create_global_context
    from kas.includehandler import IncludeHandler
    os.environ.setdefault("KAS_WORK_DIR", os.path.join(ROOT, "target", "kas-work"))
    create_global_context(ap.Namespace(no_color=True))
    merged = {}
    for f in files:
        doc = docs[f]
        if f.endswith(".lock.yml") or "machine" not in doc:
            continue  # the lock and add-ons (debug.yml) are not projects by themselves
        try:
            config, missing = IncludeHandler([f]).get_config()
            ok = not missing and config.get("target") == "brume-image"
            merged[f] = config
            result(ok, f"kas resolves {rel(f)}: machine {config.get('machine')}, "
                   f"target {config.get('target')}, {len(config.get('repos', {}))} repos")
        except Exception as e:  # noqa: BLE001 - report any loader error as a failure
            result(False, f"kas resolves {rel(f)}: {e}")

    common = docs.get(os.path.join(KAS_DIR, "brume.yml"), {})
    repos = common.get("repos", {})
    for name, repo in repos.items():
        if repo and repo.get("url"):
            ok = repo.get("branch") in ("wrynose", "2.18")
            result(ok, f"brume.yml: {name} follows {repo.get('branch')} (wrynose series)")
    lock = docs.get(os.path.join(KAS_DIR, "brume.lock.yml"))
    result(lock is not None, "yocto/kas/brume.lock.yml exists")
    if lock is not None:
        locked = (lock.get("overrides") or {}).get("repos") or {}
        bad = [n for n, v in locked.items()
               if n not in repos or not re.fullmatch(r"[0-9a-f]{40}", str((v or {}).get("commit", "")))]
        result(not bad, f"brume.lock.yml pins only brume.yml's repos, by full commit id {bad or ''}")
        floating = [n for n, r in repos.items() if r and r.get("url") and n not in locked]
        print(f"note: {len(locked)} of {len(locked) + len(floating)} layer repos pinned in "
              f"brume.lock.yml{' (floating: ' + ', '.join(floating) + ')' if floating else ''}")
    return merged


# ------------------------------------------------------------------ board profiles
# 40-pin header: BCM GPIO -> physical pin (same on Pi 3, 4, 5, Zero 2 W).
HEADER = {2: 3, 3: 5, 4: 7, 5: 29, 6: 31, 7: 26, 8: 24, 9: 21, 10: 19, 11: 23, 12: 32,
          13: 33, 14: 8, 15: 10, 16: 36, 17: 11, 18: 12, 19: 35, 20: 38, 21: 40, 22: 15,
          23: 16, 24: 18, 25: 22, 26: 37, 27: 13}
GROUND_PINS = {6, 9, 14, 20, 25, 30, 34, 39}
BOARDS = ["raspberrypi3-64", "raspberrypi4-64", "raspberrypi5", "raspberrypi0-2w-64", "generic-linux"]
KEYS = {"id", "name", "yocto_machine", "rust_target", "soc", "dt_compatible", "gpio",
        "encoders", "boot_config", "camera_overlays", "notes"}
TARGETS = {None, "aarch64-unknown-linux-gnu", "armv7-unknown-linux-gnueabihf"}


def check_boards(merged_kas):
    profiles = {}
    for b in BOARDS:
        path = os.path.join(BOARD_DIR, b + ".json")
        try:
            p = json.load(open(path))
        except (OSError, ValueError) as e:
            result(False, f"{rel(path)}: {e}")
            continue
        profiles[b] = p
        problems = []
        if set(p) != KEYS:
            problems.append(f"keys {sorted(set(p) ^ KEYS)}")
        if p.get("id") != b:
            problems.append("id differs from the file name")
        if p.get("rust_target") not in TARGETS:
            problems.append(f"rust_target {p.get('rust_target')}")
        g = p.get("gpio") or {}
        btn, led = g.get("record_button"), g.get("record_led")
        if b != "generic-linux":
            if not g.get("chip_label", "").startswith("pinctrl-"):
                problems.append("gpio.chip_label")
            for what, io in (("record_button", btn), ("record_led", led)):
                if not io or HEADER.get(io.get("line")) != io.get("header_pin"):
                    problems.append(f"{what}: BCM line and header pin disagree")
            if btn and (btn.get("bias") != "pull-up" or btn.get("active") != "low"):
                problems.append("record_button must be active low with a pull-up")
            if btn and led and btn.get("line") == led.get("line"):
                problems.append("button and LED on the same line")
            if g.get("ground_pin") not in GROUND_PINS:
                problems.append("ground_pin is not a ground pin")
            if btn and f"gpio={btn['line']}=ip,pu" not in p["boot_config"]:
                problems.append("boot_config does not pull the button up")
            if led and f"gpio={led['line']}=op,dl" not in p["boot_config"]:
                problems.append("boot_config does not drive the LED low")
        for e in p.get("encoders", []):
            if not (e.get("codec") and e.get("kind") == "v4l2-m2m" and str(e.get("device", "")).startswith("/dev/video")):
                problems.append(f"encoder {e}")
        for line in p.get("boot_config", []) + [x for v in p.get("camera_overlays", {}).values() for x in v]:
            if not re.fullmatch(r"[a-z0-9_]+=[^\s]+", line) or len(line) > 80:
                problems.append(f"config.txt line {line!r}")
        result(not problems, f"board profile {b}" + ("" if not problems else ": " + "; ".join(problems)))

    if "raspberrypi4-64" in profiles:
        enc = profiles["raspberrypi4-64"]["encoders"]
        result(any(e["device"] == "/dev/video11" and e["codec"] == "h264" for e in enc),
               "Pi 4 profile: H.264 V4L2 M2M encoder at /dev/video11")
    if "raspberrypi5" in profiles:
        result(profiles["raspberrypi5"]["encoders"] == [], "Pi 5 profile: no hardware encoder")

    # Each board's kas file puts the profile's config.txt lines into the image.
    for b, p in profiles.items():
        if not p.get("yocto_machine"):
            continue
        kasfile = os.path.join(KAS_DIR, b + ".yml")
        cfg = merged_kas.get(kasfile)
        if cfg is None:
            result(False, f"{b}: no resolvable kas file {rel(kasfile)}")
            continue
        conf = "\n".join((cfg.get("local_conf_header") or {}).values())
        m = re.search(r'^RPI_EXTRA_CONFIG = "(.*)"$', conf, re.M)
        extra = [x for x in (m.group(1).split("\\n") if m else []) if x]
        gm = re.search(r'^GPU_MEM = "(\d+)"$', conf, re.M)
        # Lines meta-raspberrypi writes itself: the KMS overlay (vc4graphics) and gpu_mem (GPU_MEM).
        want = [x for x in p["boot_config"] if x != "dtoverlay=vc4-kms-v3d" and not x.startswith("gpu_mem=")]
        want_gpu = next((x.split("=")[1] for x in p["boot_config"] if x.startswith("gpu_mem=")), None)
        ok = (cfg.get("machine") == p["yocto_machine"] and extra == want
              and (gm.group(1) if gm else None) == want_gpu)
        result(ok, f"{rel(kasfile)} matches board/{b}.json (machine, RPI_EXTRA_CONFIG, GPU_MEM)")


# ------------------------------------------------------------------ recipes and files
VENDOR = "${CARGO_VENDORING_DIRECTORY}/"
# oe-core's licence texts, as the BitBake tier checks them out (tests/yocto/bitbake.sh).
COMMON = "${COMMON_LICENSE_DIR}/"
COMMON_DIR = os.path.join(ROOT, "target", "yocto-bb", "kas-work", "openembedded-core", "meta", "files",
                          "common-licenses")


def open_crate_file(path):
    """A file of a vendored crate (`NAME-VERSION/...`) from cargo's registry: the
    unpacked sources, or else the downloaded .crate archive."""
    import io
    import tarfile
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    for d in glob.glob(os.path.join(home, "registry", "src", "*")):
        if os.path.isfile(os.path.join(d, path)):
            return open(os.path.join(d, path), "rb")
    crate = path.split("/", 1)[0]
    for c in glob.glob(os.path.join(home, "registry", "cache", "*", crate + ".crate")):
        with tarfile.open(c) as t:
            return io.BytesIO(t.extractfile(path).read())
    raise OSError(f"{path}: not in cargo's registry (run a cargo build first)")


def lic_md5(srcdir, spec):
    """md5 of a LIC_FILES_CHKSUM entry, computed as BitBake does (lines incl. newlines)."""
    parts = spec.split(";")
    params = dict(x.split("=", 1) for x in parts[1:])
    name = parts[0][len("file://"):]
    begin, end = int(params.get("beginline", 0)), int(params.get("endline", 0))
    m = hashlib.md5()
    if name.startswith(COMMON):
        f = open(os.path.join(COMMON_DIR, name[len(COMMON):]), "rb")
    elif name.startswith(VENDOR):
        f = open_crate_file(name[len(VENDOR):])
    else:
        f = open(os.path.join(srcdir, name), "rb")
    with f:
        for n, line in enumerate(f, 1):
            if begin and n < begin:
                continue
            if end and n > end:
                break
            m.update(line)
    return m.hexdigest(), params.get("md5")


def check_recipes():
    bb_path = glob.glob(os.path.join(LAYER, "recipes-multimedia", "brume", "brume_*.bb"))[0]
    bb = open(bb_path).read()
    crates_inc = open(os.path.join(LAYER, "recipes-multimedia", "brume", "brume-crates.inc")).read()
    appl_path = glob.glob(os.path.join(LAYER, "recipes-core", "brume-appliance", "brume-appliance_*.bb"))[0]
    appl = open(appl_path).read()
    for text, srcdir, name in ((bb, ROOT, "brume"),
                               (appl, os.path.join(os.path.dirname(appl_path), "files"), "brume-appliance")):
        for spec in re.findall(r'file://[^"\s]+;[^"\s]*md5=[0-9a-f]+', re.search(r'LIC_FILES_CHKSUM = "([^"]*)"', text).group(1)):
            crate = re.match(r"file://\$\{CARGO_VENDORING_DIRECTORY\}/([^/]+)/", spec)
            if crate:
                result(f'crate://crates.io/{crate.group(1).rsplit("-", 1)[0]}/{crate.group(1).rsplit("-", 1)[1]};' in crates_inc,
                       f"{name}: licence file's crate {crate.group(1)} is the one in Cargo.lock")
            if spec.startswith("file://" + COMMON) and not os.path.isdir(COMMON_DIR):
                print(f"note: {name}: {spec.split(';')[0]} not checked (oe-core not checked out yet: "
                      "tests/yocto/bitbake.sh does it)")
                continue
            try:
                got, want = lic_md5(srcdir, spec)
                result(got == want, f"{name}: LIC_FILES_CHKSUM {spec.split(';')[0]} md5 {got}"
                       + ("" if got == want else f" != {want}"))
            except OSError as e:
                result(False, f"{name}: LIC_FILES_CHKSUM {spec}: {e}")

    cargo_src = re.search(r'CARGO_SRC_DIR = "([^"]+)"', bb).group(1)
    result(os.path.isfile(os.path.join(ROOT, cargo_src, "Cargo.toml")),
           f"brume: CARGO_SRC_DIR {cargo_src} holds a Cargo.toml")
    for f, params in re.findall(r"file://([\w./-]+)(;[^\s\\]*)?", re.search(r'SRC_URI \+?= "(.*?)"', bb, re.S).group(1)):
        # The tree's own files (subdir=brume-src) are relative to the tree's root.
        base = ROOT if "subdir=brume-src" in params else os.path.join(LAYER, "recipes-multimedia", "brume", "files")
        result(os.path.exists(os.path.join(base, f)), f"brume: SRC_URI file {f} exists")
    result("AUTOREV" not in bb and "git://" not in bb,
           "brume: builds the checked-out tree (file://), not a branch head (AUTOREV)")
    result("NO_GENERIC_LICENSE" not in bb and "${BRUME_CRATE_LICENSES}" in bb,
           "brume: LICENSE includes the linked crates' licences (brume-licenses.inc)")

    unit = open(os.path.join(LAYER, "recipes-multimedia", "brume", "files", "brume.service")).read()
    directives = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    want = {
        "ExecStart": "/usr/bin/brume serve --config /data/brume/brume.json --listen 0.0.0.0:80",
        "Restart": "always", "User": "brume", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ReadWritePaths": "/data", "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    }
    bad = {k: directives.get(k) for k, v in want.items() if directives.get(k) != v}
    result(not bad, f"brume.service: start command, restart, user and hardening {bad or ''}")
    notify = directives.get("Type") == "notify" or "WatchdogSec" in directives
    src = ""
    for dirpath, _, names in os.walk(os.path.join(ROOT, "firmware")):
        src += "".join(open(os.path.join(dirpath, n), errors="replace").read()
                       for n in names if n.endswith(".rs"))
    sends = "NOTIFY_SOCKET" in src or "sd_notify" in src
    result(not notify or sends, "brume.service: Type=notify / WatchdogSec only if the binary sends "
           f"sd_notify (unit: {'notify' if notify else directives.get('Type')}, binary: "
           f"{'sends' if sends else 'does not send'})")

    users = re.search(r'USERADD_PARAM:\$\{PN\} = "(.*?)"', bb, re.S).group(1)
    result(re.search(r"--groups video,audio,gpio\b", users) is not None and users.split()[-1] == "brume",
           "brume: system user brume in groups video, audio, gpio")

    # oe-core wrynose finds wks files next to the image recipe or in <layer>/files/wic
    # (its sanity check rejects <layer>/wic).
    result(not os.path.exists(os.path.join(LAYER, "wic")), "meta-brume: no wic/ directory (wrynose's sanity check)")
    wks = open(os.path.join(LAYER, "files", "wic", "brume-sdimage.wks")).read()
    parts = re.findall(r"^part (\S+) .*--label (\w+)", wks, re.M)
    result(parts == [("/boot", "boot"), ("/", "root"), ("/data", "BRUMEDATA")],
           f"brume-sdimage.wks: boot, root, BRUMEDATA partitions {parts}")
    result("--source bootimg_partition" in wks, "brume-sdimage.wks: wrynose's bootimg_partition plugin")
    part_lines = [line for line in wks.splitlines() if line.startswith("part ")]
    result(all("--no-fstab-update" in line and "--ondisk" not in line for line in part_lines),
           "brume-sdimage.wks: fstab from base-files (--no-fstab-update), no device names")
    diskid = re.search(r"^bootloader .*--diskid 0x([0-9a-f]{8})\b", wks, re.M)
    cmdline = open(os.path.join(LAYER, "recipes-bsp", "bootfiles", "rpi-cmdline.bbappend")).read()
    result(diskid is not None and f'PARTUUID={diskid.group(1)}-02"' in cmdline
           and re.search(r'CMDLINE_ROOTFS:brumeos = ".*rootwait ro"', cmdline) is not None
           and 'CMDLINE_CMA:brumeos = ""' in cmdline,
           "cmdline.txt: root=PARTUUID of the wks's disk id, partition 2, ro; CMDLINE_CMA defined")
    fstab = [line.split() for line in open(os.path.join(LAYER, "recipes-core", "base-files", "base-files", "fstab"))
             if line.strip() and not line.startswith("#")]
    by_mp = {f[1]: f for f in fstab}
    result(by_mp.get("/data", [None])[0] == "LABEL=BRUMEDATA" and by_mp["/data"][5] == "2"
           and "/boot" not in by_mp and not any("mmcblk" in f[0] for f in fstab)
           and by_mp.get("/", [None, None, None, ""])[3] == "ro",
           "fstab: / ro, LABEL=BRUMEDATA on /data checked at boot (pass 2), /boot not mounted, no mmcblk names")
    basefiles = open(os.path.join(LAYER, "recipes-core", "base-files", "base-files_%.bbappend")).read()
    result(re.search(r"install -d .*\$\{D\}/data$", basefiles, re.M) is not None,
           "base-files: creates the /data mount point on the read-only root")
    grow = open(os.path.join(os.path.dirname(appl_path), "files", "brume-growdata.service")).read()
    result("label-BRUMEDATA.device" in grow and "Before=data.mount" in grow,
           "brume-growdata.service: grows the partition labelled BRUMEDATA before /data is mounted")
    image = open(os.path.join(LAYER, "recipes-core", "images", "brume-image.bb")).read()
    result('WKS_FILE = "brume-sdimage.wks"' in image and "read-only-rootfs" in image
           and all(p in image for p in ("brume-appliance", "avahi-daemon")),
           "brume-image: read-only root, the wks, brume-appliance and avahi")
    code = "\n".join(line for line in image.splitlines() if not line.lstrip().startswith("#"))
    result(re.search(r"^IMAGE_INSTALL = ", code, re.M) is not None and "packagegroup-base" not in code
           and all(m in image for m in ("kernel-module-uvcvideo", "kernel-module-snd-usb-audio",
                                        "kernel-module-bcm2835-codec")),
           "brume-image: IMAGE_INSTALL named (no packagegroup-base), with the kernel modules Brume needs")
    first = json.load(open(os.path.join(os.path.dirname(appl_path), "files", "brume.json")))
    result(first.get("streams") == {}, "brume-appliance: the first configuration runs no stream (no demo around the clock)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-kas", action="store_true", help="skip the checks that need kas installed")
    args = ap.parse_args()
    merged = {} if args.no_kas else check_kas()
    check_boards(merged)
    check_recipes()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
