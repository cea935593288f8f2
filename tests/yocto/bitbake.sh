#!/usr/bin/env bash
# The BitBake tier: parses meta-brume on the real layer stack and resolves brume-image's
# task graph, offline.
#   * the layers come from ../shared/yocto-layers (shallow git archives at the commits
#     of yocto/kas/brume.lock.yml and rauc.lock.yml), unpacked once into the cache;
#   * kas (target/yocto-venv) checks out yocto/kas/<machine>.yml with the lock, cloning
#     those repositories through KAS_PREMIRRORS (file://), and writes the build's
#     bblayers.conf and local.conf exactly as for a real build;
#   * BitBake runs as an unprivileged user (it refuses root): `bitbake -p` (0 errors),
#     then `bitbake -g brume-image`; the graph must contain brume, brume-appliance, the
#     kernel, and none of rpcbind, ofono, neard, bluez5, wpa-supplicant, libx11, cairo;
#     the image must name the kernel modules Brume needs (bitbake-getvar).
# The parse cache (build/tmp/cache), the persistent cache (build/cache), the layers
# and the downloads live in the machine's cache, /var/cache/brume/yocto-bb
# (BRUME_BB_CACHE), not in the clone, so a fresh clone parses warm: a cold parse takes
# 10-20 min on 2 cores, a warm one well under a minute. BitBake's cache is keyed on
# the paths of the layers, so the tree's yocto/, firmware/, web/ and Cargo files are
# copied to a fixed place there (src/), file by file, a file rewritten only when its
# content changed: only the recipes whose files changed are parsed again.
# Parse and graph times are printed.
# Configurations: BRUME_BB_MACHINES (default "raspberrypi4-64 raspberrypi5
# raspberrypi4-64:rauc"; "M:rauc" adds yocto/kas/rauc.yml, the A/B image). With a
# cold cache only the first is run unless BRUME_BB_COLD_ALL=1 (CI's time budget); the
# output says so.
# Usage: tests/yocto/bitbake.sh VENV   (called by tests/yocto/run.sh). Prints PASS:/FAIL:.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
root=$PWD
venv=${1:-$root/target/yocto-venv}
layers_src=${BRUME_YOCTO_LAYERS:-$root/../shared/yocto-layers}
W=${BRUME_BB_CACHE:-/var/cache/brume/yocto-bb}
src=$W/src
user=brume-bb
machines=${BRUME_BB_MACHINES:-raspberrypi4-64 raspberrypi5 raspberrypi4-64:rauc}
threads=${BRUME_BB_THREADS:-2}

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; }
note() { echo "bitbake: $*"; }

if [ ! -d "$layers_src" ]; then
    fail "bitbake tier: no layer archives in $layers_src"
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    fail "bitbake tier: run as root (it creates the unprivileged user $user)"
    exit 1
fi

# ---------------------------------------------------------------- host
# Yocto's host tools (oe-core's sanity checks them at every parse) and the UTF-8 locale.
need=()
for t in gawk chrpath diffstat makeinfo cpio lz4c zstd file wget bzip2 patch g++ git; do
    command -v "$t" >/dev/null || need+=("$t")
done
locales=$(locale -a 2>/dev/null || true)
if [ "${#need[@]}" -gt 0 ] || ! grep -qi '^en_US\.utf8$' <<<"$locales"; then
    note "installing host tools (missing: ${need[*]:-locale})"
    for i in 1 2 3; do apt-get update -qq && break; sleep $((i * 5)); done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gawk wget git diffstat unzip texinfo gcc g++ make chrpath socat cpio python3 \
        python3-pexpect xz-utils debianutils iputils-ping python3-git python3-jinja2 \
        python3-subunit zstd lz4 file locales libacl1 bzip2 patch perl >/dev/null 2>&1
    if ! grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen 2>/dev/null; then
        echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
    fi
    locale-gen >/dev/null 2>&1
fi
if ! id "$user" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir "$W/home" --no-create-home --shell /bin/bash "$user" ||
        { fail "bitbake tier: useradd $user"; exit 1; }
fi
mkdir -p "$W/home" "$W/downloads" "$W/sstate-cache"
chmod a+rx "$W" "$(dirname "$W")"

# ---------------------------------------------------------------- the tree
# A copy at a fixed path (see the top): files rewritten only when their content
# changed, files gone from the tree removed.
python3 - "$root" "$src" <<'PY' || { fail "bitbake tier: copying the tree to $src"; exit 1; }
import filecmp, os, shutil, sys
root, dst = sys.argv[1], sys.argv[2]
keep = set()
for top in ["Cargo.toml", "Cargo.lock", "firmware", "web/index.html", "web/ui", "yocto", "board"]:
    s = os.path.join(root, top)
    walk = [(os.path.dirname(s), [], [os.path.basename(s)])] if os.path.isfile(s) else os.walk(s)
    for d, dirs, files in walk:
        dirs[:] = [x for x in dirs if x not in ("target", "node_modules", ".git")]
        for f in files:
            a = os.path.join(d, f)
            rel = os.path.relpath(a, root)
            b = os.path.join(dst, rel)
            keep.add(rel)
            if os.path.islink(a) or not os.path.isfile(a):
                continue
            if os.path.isfile(b) and filecmp.cmp(a, b, shallow=False):
                continue
            os.makedirs(os.path.dirname(b), exist_ok=True)
            shutil.copy2(a, b)
for d, dirs, files in os.walk(dst):
    dirs[:] = [x for x in dirs if x != ".git"]
    for f in files:
        rel = os.path.relpath(os.path.join(d, f), dst)
        if rel not in keep:
            os.remove(os.path.join(d, f))
PY
# kas finds the layers of the repository that holds the kas file through git.
[ -d "$src/.git" ] || git -C "$src" init -q
chmod -R a+rX "$src"

# ---------------------------------------------------------------- layers
# Unpack each archive once (kept while its commit is the locked one).
declare -A url_of
lock=$root/yocto/kas/brume.lock.yml
rauc_lock=$root/yocto/kas/rauc.lock.yml
locked() { "$venv/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["overrides"]["repos"][sys.argv[2]]["commit"])' "$1" "$2"; }
for n in bitbake openembedded-core meta-yocto meta-openembedded meta-raspberrypi meta-rauc meta-rauc-community; do
    case $n in meta-rauc*) l=$rauc_lock ;; *) l=$lock ;; esac
    want=$(locked "$l" "$n") || { fail "bitbake tier: $n not pinned in ${l##*/}"; exit 1; }
    d=$W/layers/$n.git
    if [ "$(git -C "$d" rev-parse -q --verify "$want^{commit}" 2>/dev/null)" != "$want" ]; then
        rm -rf "$d" && mkdir -p "$d"
        tar --zstd -xf "$layers_src/$n.git.tar.zst" -C "$d" ||
            { fail "bitbake tier: unpack $n"; exit 1; }
        git -C "$d" rev-parse -q --verify "$want^{commit}" >/dev/null ||
            { fail "bitbake tier: $layers_src/$n.git.tar.zst lacks the locked commit $want"; exit 1; }
    fi
done

# ---------------------------------------------------------------- per machine
# The A/B image (yocto/kas/rauc.yml): RAUC, U-Boot with Brume's boot script, the
# mark-good service, the A/B layout, and the bundle's graph. Uses run_machine's locals.
rauc_checks() {
    local want missing=""
    for want in rauc rpi-u-boot-scr u-boot brume-rauc-mark-good; do
        grep -qx -- "$want" <<<"$pns" || missing+=" $want"
    done
    [ -z "$missing" ] && pass "$m: graph has rauc, U-Boot and its boot script, brume-rauc-mark-good" ||
        fail "$m: graph lacks:$missing"
    local wks paths
    wks=$(bb bitbake-getvar --quiet --value -r brume-image WKS_FILE 2>&1)
    [ "$wks" = brume-sdimage-ab.wks ] && pass "$m: WKS_FILE = brume-sdimage-ab.wks (two root slots)" ||
        fail "$m: WKS_FILE = $wks"
    paths=$(bb bitbake-getvar --quiet --value -r rpi-u-boot-scr FILESPATH 2>&1)
    # Brume's boot script (PARTUUID roots) comes before meta-rauc-raspberrypi's.
    local first
    first=$(tr ':' '\n' <<<"$paths" | grep -n -e 'meta-brume-rauc' -e 'meta-rauc-raspberrypi' | sed -n 1p || true)
    grep -q meta-brume-rauc <<<"$first" && pass "$m: rpi-u-boot-scr takes meta-brume-rauc's boot.cmd.in first" ||
        fail "$m: rpi-u-boot-scr's FILESPATH does not put meta-brume-rauc first"
    local t0 out rc
    t0=$(date +%s)
    out=$(bb bitbake -g brume-bundle 2>&1)
    rc=$?
    printf '%s\n' "$out" >"$B/bundle-graph.log"
    if [ "$rc" = 0 ] && grep -qx brume-image "$B/pn-buildlist"; then
        pass "$m: bitbake -g brume-bundle: the bundle packs brume-image ($(($(date +%s) - t0)) s)"
    else
        printf '%s\n' "$out" | grep -A3 '^ERROR:' | tail -20 | sed 's/^/  /'
        fail "$m: bitbake -g brume-bundle: rc $rc (see bundle-graph.log)"
    fi
}

cold_machines=0
run_machine() {
    local m=$1 machine=${1%%:*} B=$W/build-${1/:/-} t0 t_parse t_graph out rc
    local kasfiles=$src/yocto/kas/$machine.yml rauc=0
    if [ "$m" != "$machine" ]; then
        rauc=1
        kasfiles+=":$src/yocto/kas/rauc.yml"
    fi
    mkdir -p "$B/conf"
    # kas checks out the layers through file:// premirrors and writes the build's conf.
    local mirrors
    mirrors=$(printf '%s\n' \
        "https://git\.openembedded\.org/(.*) file://$W/layers/\1.git" \
        "https://git\.yoctoproject\.org/(.*) file://$W/layers/\1.git" \
        "https://github\.com/rauc/(.*) file://$W/layers/\1.git")
    if ! out=$(cd "$W" && env KAS_WORK_DIR="$W/kas-work" KAS_BUILD_DIR="$B" \
        KAS_PREMIRRORS="$mirrors" GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory \
        GIT_CONFIG_VALUE_0='*' "$venv/bin/kas" checkout "$kasfiles" 2>&1); then
        printf '%s\n' "$out" | tail -20 | sed 's/^/  /'
        fail "$m: kas checkout (lock, file:// layers)"
        return 0
    fi
    # The CI's own settings: offline, two threads, caches under target/.
    cat >"$B/conf/site.conf" <<EOF
BB_NO_NETWORK = "1"
BB_NUMBER_THREADS = "$threads"
BB_NUMBER_PARSE_THREADS = "$threads"
PARALLEL_MAKE = "-j $threads"
DL_DIR = "$W/downloads"
SSTATE_DIR = "$W/sstate-cache"
BB_DISKMON_DIRS = ""
EOF
    # Warm when the last successful parse had this very configuration (BitBake's cache
    # is keyed on it: any change to local.conf, the layers or their conf/ re-parses all).
    local key cold=1
    key=$(cat "$B/conf/local.conf" "$B/conf/bblayers.conf" "$B/conf/site.conf" "$lock" "$rauc_lock" \
        $(find "$src/yocto/meta-brume/conf" "$src/yocto/meta-brume-rauc/conf" -type f | sort) | sha256sum | cut -d' ' -f1)
    [ "$(cat "$B/.parsed-config" 2>/dev/null)" = "$key" ] && cold=0
    if [ "$cold" = 1 ] && [ "$cold_machines" -ge 1 ] && [ "${BRUME_BB_COLD_ALL:-0}" != 1 ]; then
        note "$m: SKIPPED (cold parse cache: one cold machine per run to stay in CI's budget; the next run, or BRUME_BB_COLD_ALL=1, covers it)"
        return 0
    fi
    [ "$cold" = 1 ] && cold_machines=$((cold_machines + 1))
    chown -R "$user:$user" "$W/home" "$W/downloads" "$W/sstate-cache" "$B"
    chmod -R a+rX "$W/kas-work" "$W/layers"
    bb() {
        runuser -u "$user" -- env -i HOME="$W/home" LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8 \
            PATH="$W/kas-work/bitbake/bin:$W/kas-work/openembedded-core/scripts:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin" \
            BBSERVER= bash -c 'cd "$1" && shift && "$@"' _ "$B" "$@"
    }

    t0=$(date +%s)
    out=$(bb bitbake -p 2>&1)
    rc=$?
    t_parse=$(($(date +%s) - t0))
    printf '%s\n' "$out" >"$B/parse.log"
    local errors
    errors=$(printf '%s\n' "$out" | grep -c '^ERROR:' || true)
    note "$m: parse $([ "$cold" = 1 ] && echo cold || echo warm) ${t_parse} s (rc $rc, $errors errors)"
    if [ "$rc" = 0 ] && [ "$errors" = 0 ]; then
        echo "$key" >"$B/.parsed-config"
        pass "$m: bitbake -p: 0 errors ($(grep -o 'Parsing of [0-9]* .bb files complete ([0-9]* cached, [0-9]* parsed)' <<<"$out" | sed 's/Parsing of //; s/ complete//' | tail -1))"
    else
        printf '%s\n' "$out" | grep -A3 '^ERROR:' | tail -30 | sed 's/^/  /'
        fail "$m: bitbake -p: rc $rc, $errors errors (see ${B#"$root"/}/parse.log)"
        return 0
    fi

    t0=$(date +%s)
    out=$(bb bitbake -g brume-image 2>&1)
    rc=$?
    t_graph=$(($(date +%s) - t0))
    printf '%s\n' "$out" >"$B/graph.log"
    note "$m: graph ${t_graph} s (rc $rc)"
    if [ "$rc" != 0 ] || [ ! -s "$B/pn-buildlist" ]; then
        printf '%s\n' "$out" | grep -A3 '^ERROR:' | tail -30 | sed 's/^/  /'
        fail "$m: bitbake -g brume-image: rc $rc (see ${B#"$root"/}/graph.log)"
        return 0
    fi
    local pns ntasks
    pns=$(sort -u "$B/pn-buildlist")
    ntasks=$(grep -c '^"[^"]*" \[label' "$B/task-depends.dot" || true)
    pass "$m: bitbake -g brume-image: $(printf '%s\n' "$pns" | wc -l) recipes, $ntasks tasks"
    local want missing="" bad=""
    for want in brume brume-appliance brume-image linux-raspberrypi rpi-cmdline base-files \
        systemd avahi v4l-utils libgpiod; do
        grep -qx -- "$want" <<<"$pns" || missing+=" $want"
    done
    [ -z "$missing" ] && pass "$m: graph has brume, brume-appliance, the kernel, systemd, avahi, v4l-utils" ||
        fail "$m: graph lacks:$missing"
    for want in rpcbind ofono neard bluez5 wpa-supplicant libx11 cairo wayland mesa pulseaudio nfs-utils; do
        grep -qx -- "$want" <<<"$pns" && bad+=" $want"
    done
    [ -z "$bad" ] && pass "$m: graph has none of rpcbind ofono neard bluez5 wpa-supplicant libx11 cairo wayland mesa pulseaudio nfs-utils" ||
        fail "$m: graph has unwanted recipes:$bad"

    # What the image names (runtime packages do not appear in the task graph).
    local install features
    install=$(bb bitbake-getvar --quiet --value -r brume-image IMAGE_INSTALL 2>&1)
    features=$(bb bitbake-getvar --quiet --value -r brume-image DISTRO_FEATURES 2>&1)
    printf 'IMAGE_INSTALL=%s\nDISTRO_FEATURES=%s\n' "$install" "$features" >"$B/vars.log"
    local mods="kernel-module-uvcvideo kernel-module-snd-usb-audio"
    [ "$machine" != raspberrypi5 ] && mods+=" kernel-module-bcm2835-codec kernel-module-bcm2835-v4l2"
    missing=""
    for want in $mods brume brume-appliance udev-rules-rpi; do
        grep -qw -- "$want" <<<"$install" || missing+=" $want"
    done
    [ -z "$missing" ] && pass "$m: IMAGE_INSTALL names $mods" || fail "$m: IMAGE_INSTALL lacks:$missing"
    bad=""
    for want in x11 bluetooth wifi nfc 3g nfs wayland opengl pulseaudio ptest; do
        grep -qw -- "$want" <<<"$features" && bad+=" $want"
    done
    [ -z "$bad" ] && grep -qw systemd <<<"$features" &&
        pass "$m: DISTRO_FEATURES: $features" || fail "$m: DISTRO_FEATURES has:${bad:- no systemd} ($features)"
    local kcfg
    kcfg=$(bb bitbake-getvar --quiet --value -r virtual/kernel SRC_URI 2>&1)
    grep -q 'file://brume.cfg' <<<"$kcfg" && pass "$m: the kernel takes brume.cfg (watchdog built in)" ||
        fail "$m: the kernel's SRC_URI lacks brume.cfg"
    if [ "$rauc" = 0 ]; then
        local cmdline
        cmdline=$(bb bitbake-getvar --quiet --value -r rpi-cmdline CMDLINE 2>&1)
        if grep -qw ro <<<"$cmdline" && grep -q 'root=PARTUUID=4252554d-02' <<<"$cmdline" && ! grep -q '\${' <<<"$cmdline"; then
            pass "$m: cmdline.txt: root=PARTUUID=4252554d-02 ro, no unexpanded variable"
        else
            fail "$m: cmdline.txt: $cmdline"
        fi
    else
        rauc_checks
    fi
    # Recipes built for the board (the rest are native, cross or SDK tools); the ones
    # whose packages do_rootfs installs are not known without a build.
    local ntarget
    ntarget=$(grep -v -c -e '-native$' -e '-cross' -e '^nativesdk-' -e '^gcc-source' -e '-crosssdk' <<<"$pns" || true)
    # The recipes whose packages do_rootfs may install (it waits for their packages):
    # the image's build and runtime closure, an upper bound of the root's content.
    local nroot
    nroot=$(grep -E '^"brume-image\.do_rootfs" -> "[^"]*\.do_package_write_[a-z]*"' "$B/task-depends.dot" |
        sed 's/.*-> "\([^"]*\)\.do_.*/\1/' | sort -u | grep -c '' || true)
    echo "  figures $m: do_rootfs waits for the packages of $nroot recipes"
    echo "  figures $m: parse ${t_parse} s ($([ "$cold" = 1 ] && echo cold || echo warm)), graph ${t_graph} s, $(grep -c '' <<<"$pns") recipes ($ntarget for the board), $ntasks tasks"
}

for m in $machines; do
    run_machine "$m"
done
