#!/usr/bin/env bash
# Offline checks of the Yocto layer (yocto/meta-brume), the kas files (yocto/kas) and
# the board profiles (board/). No Yocto build (toolchain, kernel and firmware sources are
# not reachable), but a BitBake parse and task graph on the real layers:
#   * oelint-adv --release wrynose on every recipe (clean, except the generated
#     brume-crates.inc's own spacing);
#   * brume-crates.inc equals the one regenerated from Cargo.lock, brume-licenses.inc
#     the licences of the crates linked into brume (licenses_inc.py);
#   * every kas file validates against kas's JSON schema and resolves with kas's own
#     loader (includes, lock file); the board kas files match the board profiles;
#   * board profiles, LIC_FILES_CHKSUM md5s, the systemd units (systemd-analyze
#     verify), the wks layout and the first-boot script;
#   * the crates of brume-crates.inc fetch and sha256-verify with BitBake's own fetcher
#     and brume builds for aarch64 --frozen --offline against only them (fetch.py);
#   * the BitBake tier (bitbake.sh): BitBake 2.18 on the layers pinned in
#     brume.lock.yml, from ../shared/yocto-layers: `bitbake -p` with 0 errors and
#     `bitbake -g brume-image` with what the image needs and nothing it must not have.
#     BRUME_YOCTO_BITBAKE=0 skips it (reported as a failure, never silently).
# Run as root on Debian 12 or newer (installs python3-venv if needed; oelint-adv and
# kas from PyPI into target/yocto-venv). Idempotent, no stdin.
# Prints `N passed, M failed` and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
venv="$root/target/yocto-venv"
# Pinned: a newer oelint-adv may bring new rules; bump on purpose.
reqs=(oelint-adv==9.11.2 kas==5.5 jsonschema)

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() {
    echo
    echo "yocto: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

# ---------------------------------------------------------------- tools
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    fail "python 3.11 or newer is needed (tomllib)"
    finish
fi
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
    for i in 1 2 3; do apt-get update -qq && break; sleep $((i * 5)); done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
stamp="$venv/.brume-reqs"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${reqs[*]}" ]; then
    t0=$(date +%s)
    rm -rf "$venv"
    if ! "$py" -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        apt_install python3-venv && "$py" -m venv "$venv" || { fail "cannot create a venv (python3-venv)"; finish; }
    fi
    ok=""
    for i in 1 2 3; do
        "$venv/bin/pip" install -q --disable-pip-version-check "${reqs[@]}" && { ok=1; break; }
        sleep $((i * 5))
    done
    [ -n "$ok" ] || { fail "pip install ${reqs[*]}"; finish; }
    echo "${reqs[*]}" >"$stamp"
    echo "yocto: installed ${reqs[*]} in $(($(date +%s) - t0)) s"
fi
command -v systemd-analyze >/dev/null || apt_install systemd >/dev/null 2>&1 || true

# The FDK licence file is checked inside the fdk-aac-sys crate: have cargo's registry.
command -v cargo >/dev/null && cargo fetch --locked -q >/dev/null 2>&1 || true

# ---------------------------------------------------------------- oelint-adv
mapfile -t recipes < <(find yocto/meta-brume yocto/meta-brume-rauc -name '*.bb' -o -name '*.bbappend' | sort)
lint=$("$venv/bin/oelint-adv" --quiet --release wrynose \
    --constantmods "+tests/yocto/oelint-constants.json" \
    --suppress oelint.vars.homepageping --hide info "${recipes[@]}" 2>&1)
# The generated .inc keeps oe-core's own layout (`SRC_URI += " \`), which oelint flags.
findings=$(printf '%s\n' "$lint" | grep -v -e '^$' -e 'brume-crates\.inc:[0-9]*:[a-z]*:oelint\.vars\.inconspaces:' || true)
if [ -z "$findings" ]; then
    pass "oelint-adv --release wrynose: ${#recipes[@]} recipes clean"
else
    printf '%s\n' "$findings" | sed "s|$root/||"
    fail "oelint-adv --release wrynose: $(printf '%s\n' "$findings" | wc -l) findings"
fi

# ---------------------------------------------------------------- crates.inc
if out=$("$venv/bin/python" tests/yocto/crates_inc.py --check 2>&1); then
    pass "$(printf '%s\n' "$out" | grep -v '^note:' | tail -1)"
else
    printf '%s\n' "$out" | tail -40
    fail "brume-crates.inc does not match Cargo.lock (run tests/yocto/crates_inc.py)"
fi

if out=$("$venv/bin/python" tests/yocto/licenses_inc.py --check 2>&1); then
    pass "$(printf '%s\n' "$out" | tail -1)"
else
    printf '%s\n' "$out" | tail -40
    fail "brume-licenses.inc does not match Cargo.lock (run tests/yocto/licenses_inc.py)"
fi

# ---------------------------------------------------------------- kas, boards, recipes
out=$(KAS_WORK_DIR="$root/target/kas-work" "$venv/bin/python" tests/yocto/check_layer.py 2>&1)
printf '%s\n' "$out" | grep -v -e '^PASS: ' -e '^FAIL: ' | sed 's/^/  /'
passed=$((passed + $(printf '%s\n' "$out" | grep -c '^PASS: ')))
failed=$((failed + $(printf '%s\n' "$out" | grep -c '^FAIL: ')))
printf '%s\n' "$out" | grep -e '^PASS: ' -e '^FAIL: '
if ! grep -q -e '^PASS: ' -e '^FAIL: ' <<<"$out"; then
    fail "tests/yocto/check_layer.py ran no check"
fi

# ---------------------------------------------------------------- crates: fetch + frozen build
# BitBake's own crate:// fetcher (bb from PyPI bitbake-setup) fetches and sha256-verifies
# every crate of brume-crates.inc, unpacks them like do_unpack, and brume builds for
# aarch64 --frozen --offline against only them. Cached in target/ (yocto-dl, yocto-build).
t0=$(date +%s)
out=$("$venv/bin/python" tests/yocto/fetch.py 2>&1)
rc=$?
if [ "$rc" != 0 ]; then
    printf '%s\n' "$out" | grep -v -e '^PASS: ' -e '^FAIL: ' | tail -40 | sed 's/^/  /'
fi
passed=$((passed + $(printf '%s\n' "$out" | grep -c '^PASS: ')))
failed=$((failed + $(printf '%s\n' "$out" | grep -c '^FAIL: ')))
printf '%s\n' "$out" | grep -e '^PASS: ' -e '^FAIL: '
if [ "$rc" != 0 ] && ! grep -q '^FAIL: ' <<<"$out"; then
    fail "tests/yocto/fetch.py exited $rc"
fi
echo "yocto: crates fetch + frozen build took $(($(date +%s) - t0)) s"

# ---------------------------------------------------------------- systemd units, scripts
units=(yocto/meta-brume/recipes-multimedia/brume/files/brume.service
    yocto/meta-brume/recipes-core/brume-appliance/files/brume-growdata.service
    yocto/meta-brume/recipes-core/brume-appliance/files/brume-clock.service
    yocto/meta-brume/recipes-core/brume-appliance/files/brume-clock-save.service
    yocto/meta-brume/recipes-core/brume-appliance/files/brume-clock-save.timer
    yocto/meta-brume-rauc/recipes-core/brume-rauc-health/files/brume-rauc-mark-good.service)
if command -v systemd-analyze >/dev/null; then
    for u in "${units[@]}"; do
        # The binaries are not installed here: only syntax and known directives count.
        bad=$(systemd-analyze verify --man=no "$u" 2>&1 | grep -v -e 'is not executable' -e '^$' || true)
        if [ -z "$bad" ]; then
            pass "systemd-analyze verify $(basename "$u")"
        else
            printf '%s\n' "$bad"
            fail "systemd-analyze verify $(basename "$u")"
        fi
    done
else
    fail "systemd-analyze missing: cannot check the units"
fi
for sh_script in yocto/meta-brume/recipes-core/brume-appliance/files/brume-growdata.sh \
    yocto/meta-brume/recipes-core/brume-appliance/files/brume-clock.sh; do
    if sh -n "$sh_script" && { ! command -v dash >/dev/null || dash -n "$sh_script"; }; then
        pass "$(basename "$sh_script"): POSIX sh syntax"
    else
        fail "$(basename "$sh_script"): syntax"
    fi
done
# brume-clock: save, then restore sets nothing back (the clock is ahead of the file).
clock_file=$(mktemp)
if BRUME_CLOCK_FILE=$clock_file sh yocto/meta-brume/recipes-core/brume-appliance/files/brume-clock.sh save &&
    [ "$(cat "$clock_file")" -ge "$(($(date +%s) - 5))" ] &&
    BRUME_CLOCK_FILE=$clock_file sh yocto/meta-brume/recipes-core/brume-appliance/files/brume-clock.sh restore; then
    pass "brume-clock: save writes the time, restore leaves a later clock alone"
else
    fail "brume-clock: save/restore"
fi
rm -f "$clock_file"
# The mount units systemd makes from the layer's fstab: data.mount by label, checked
# first (systemd-fsck@), and the units that order themselves around it verify with it.
gen=/lib/systemd/system-generators/systemd-fstab-generator
[ -x "$gen" ] || gen=/usr/lib/systemd/system-generators/systemd-fstab-generator
gdir=$(mktemp -d)
if [ -x "$gen" ] && SYSTEMD_FSTAB=yocto/meta-brume/recipes-core/base-files/base-files/fstab SYSTEMD_PROC_CMDLINE="" \
    "$gen" "$gdir" "$gdir" "$gdir" >/dev/null 2>&1 && [ -f "$gdir/data.mount" ] &&
    grep -qx 'What=/dev/disk/by-label/BRUMEDATA' "$gdir/data.mount" &&
    grep -q '^Requires=systemd-fsck@dev-disk-by\\x2dlabel-BRUMEDATA.service' "$gdir/data.mount" &&
    [ ! -e "$gdir/boot.mount" ]; then
    pass "fstab -> systemd-fstab-generator: data.mount from LABEL=BRUMEDATA after its fsck, no boot.mount"
else
    fail "fstab -> systemd-fstab-generator: $(ls "$gdir" 2>&1 | tr '\n' ' ') $(cat "$gdir/data.mount" 2>/dev/null | grep -e What -e fsck | tr '\n' ' ')"
fi
rm -rf "$gdir"
if "$venv/bin/python" -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' \
    yocto/meta-brume/recipes-multimedia/brume/files/avahi-brume.xml 2>/dev/null; then
    pass "avahi-brume.xml: well-formed"
else
    fail "avahi-brume.xml: not well-formed XML"
fi

# ---------------------------------------------------------------- RAUC (A/B image)
out=$(tests/yocto/rauc.sh 2>&1)
printf '%s\n' "$out" | grep -v -e '^PASS: ' -e '^FAIL: ' | sed 's/^/  /'
passed=$((passed + $(printf '%s\n' "$out" | grep -c '^PASS: ')))
failed=$((failed + $(printf '%s\n' "$out" | grep -c '^FAIL: ')))
printf '%s\n' "$out" | grep -e '^PASS: ' -e '^FAIL: '
grep -q -e '^PASS: ' -e '^FAIL: ' <<<"$out" || fail "tests/yocto/rauc.sh ran no check"
# The A/B boot script names the slots' roots by PARTUUID (SD, USB and NVMe alike) and
# loads the kernel from the device it was booted from, never mmcblk0/"mmc 0".
bootcmd=yocto/meta-brume-rauc/recipes-bsp/rpi-u-boot-scr/files/boot.cmd.in
if grep -q 'root=PARTUUID=${rootuuid} ro' "$bootcmd" && grep -q 'rootuuid "4252554d-02"' "$bootcmd" &&
    grep -q 'rootuuid "4252554d-03"' "$bootcmd" && ! grep -q -e mmcblk -e '"mmc 0' "$bootcmd"; then
    pass "A/B boot script: roots by PARTUUID 4252554d-02/-03, read-only, no mmcblk0 or mmc 0"
else
    fail "A/B boot script ($bootcmd) names devices, or its roots are not PARTUUID ... ro"
fi
if sh -n yocto/meta-brume-rauc/recipes-core/brume-rauc-health/files/brume-rauc-mark-good.sh; then
    pass "brume-rauc-mark-good.sh: sh -n"
else
    fail "brume-rauc-mark-good.sh: sh -n"
fi

# ---------------------------------------------------------------- BitBake
if [ "${BRUME_YOCTO_BITBAKE:-1}" = 0 ]; then
    fail "bitbake tier not run (BRUME_YOCTO_BITBAKE=0)"
else
    t0=$(date +%s)
    out=$(tests/yocto/bitbake.sh "$venv" 2>&1)
    printf '%s\n' "$out" | grep -v -e '^PASS: ' -e '^FAIL: ' | sed 's/^/  /'
    passed=$((passed + $(printf '%s\n' "$out" | grep -c '^PASS: ')))
    failed=$((failed + $(printf '%s\n' "$out" | grep -c '^FAIL: ')))
    printf '%s\n' "$out" | grep -e '^PASS: ' -e '^FAIL: '
    if ! grep -q -e '^PASS: ' -e '^FAIL: ' <<<"$out"; then
        fail "tests/yocto/bitbake.sh ran no check"
    fi
    echo "yocto: bitbake tier took $(($(date +%s) - t0)) s"
fi

finish
