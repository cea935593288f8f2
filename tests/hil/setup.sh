#!/usr/bin/env bash
# Host side of the real-driver tier: packages, Debian's amd64 and arm64 kernels and
# modules, gpio-sim and vicodec built out of tree for both, busybox for both guests.
# Idempotent, no stdin; everything it fetches or builds is cached under $HIL (target/hil).
# Writes $HIL/kernel.env (ABI, KV) for run.sh.
#
# Needs root on Debian 12 (apt-get). Without root it only checks what is there.
# Kernel packages are fetched with `apt-get download` and unpacked here, never installed.
set -euo pipefail
HIL=${HIL:?}
mkdir -p "$HIL"
export DEBIAN_FRONTEND=noninteractive
say() { echo "hil: $*"; }

apt_update() {
    # A mirror mid-sync fails an index now and then; another user may hold the lock.
    # A failed index leaves the others updated: two tries, then go on.
    for i in 1 2; do
        apt-get -o DPkg::Lock::Timeout=600 update -qq >"$HIL/apt-update.log" 2>&1 && return 0
        tail -3 "$HIL/apt-update.log"
        say "apt-get update failed (try $i)"
        sleep 5
    done
    return 1
}
apt_install() {
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends --allow-downgrades "$@" \
        >"$HIL/apt.log" 2>&1 || { tail -20 "$HIL/apt.log"; return 1; }
}
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *'ok installed'* ]]; }

root=0
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && root=1
if [ $root = 0 ]; then
    say "not root on Debian: assuming the packages are installed"
fi

# ---------------------------------------------------------------- packages
# The cross toolchain and libasound2-dev:arm64 build the aarch64 brume; the kernel
# headers and gcc build gpio-sim; ffmpeg and python3 check the streams on the host.
pkgs=(qemu-system-x86 qemu-system-arm cpio kmod xz-utils make gcc-12 bc binutils
    gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
    pkg-config libasound2-dev libasound2-dev:arm64 libasound2-data
    ffmpeg curl python3)
if [ $root = 1 ]; then
    added=0
    if ! grep -qx arm64 <<<"$(dpkg --print-foreign-architectures)"; then
        dpkg --add-architecture arm64
        added=1
    fi
    need=()
    for p in "${pkgs[@]}"; do installed "$p" || need+=("$p"); done
    # Some images carry a backported qemu-utils (10.x) that Breaks bookworm's
    # qemu-system-common 7.2: put bookworm's own back (a downgrade) alongside.
    qu=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    case "$qu" in "" | 1:7.*) ;; *) installed qemu-system-x86 || need+=(qemu-utils/bookworm) ;; esac
    if [ ${#need[@]} -gt 0 ] || [ $added = 1 ]; then
        apt_update || say "apt-get update failed; going on with the cached lists"
        if [ ${#need[@]} -gt 0 ]; then
            say "installing ${need[*]}"
            apt_install "${need[@]}"
        fi
    fi
fi
for c in qemu-system-x86_64 qemu-system-aarch64 cpio depmod modprobe xz make aarch64-linux-gnu-gcc ffprobe ffmpeg python3 readelf; do
    command -v $c >/dev/null || { say "missing $c"; exit 1; }
done

# ---------------------------------------------------------------- kernel ABI
# Kernel packages are looked up in a private copy of the package lists (this machine's
# Debian mirrors, amd64 and arm64 only), refreshed every hour: security updates change
# the ABI and the archive keeps only the current one, and a foreign architecture the
# machine also has (armhf) whose index is mid-sync on the mirror cannot hide arm64's.
P=$HIL/apt
mkdir -p "$P/lists/partial" "$P/sources.list.d" "$P/cache/archives/partial"
rm -f "$P/sources.list.d/"*
cp /etc/apt/sources.list.d/*.sources "$P/sources.list.d/" 2>/dev/null || true
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$P/sources.list.d/system.list"
APT=(-o "Dir::State::Lists=$P/lists" -o "Dir::Etc::SourceParts=$P/sources.list.d" -o Dir::Etc::SourceList=/dev/null
    -o "Dir::Cache=$P/cache" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o APT::Architectures::=amd64 -o APT::Architectures::=arm64)
if [ -z "$(find "$P/lists" -maxdepth 1 -name '*InRelease' -mmin -60 2>/dev/null)" ]; then
    for i in 1 2 3; do
        apt-get "${APT[@]}" update -qq >"$P/update.log" 2>&1 && break
        say "apt-get update (kernel lists) failed (try $i)"; tail -3 "$P/update.log"
        sleep $((i * 5))
    done
fi
# Every consumer in these tiers reads its whole input (no `awk … exit`, `head`,
# `grep -q` on a pipe): under pipefail a producer killed by SIGPIPE fails the pipeline.
ABI=$(apt-cache "${APT[@]}" depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ && !found++ {sub(/^linux-image-/, "", $2); sub(/-amd64$/, "", $2); print $2}')
[ -n "$ABI" ] || { say "cannot find the kernel ABI (apt-cache depends linux-image-amd64)"; exit 1; }
KV=$(apt-cache "${APT[@]}" policy "linux-headers-$ABI-common" | awk '/Candidate:/ && !found++ {print $2}')
[ -n "$KV" ] && [ "$KV" != "(none)" ] || { say "no candidate for linux-headers-$ABI-common"; exit 1; }
say "kernel ABI $ABI, version $KV"

K=$HIL/kernel/$ABI
mkdir -p "$K/debs"
if [ ! -e "$K/debs/.done" ]; then
    # Every kernel package at the one version: both guests run the same kernel release,
    # even while one architecture's index is still catching up with a new point release.
    list=("linux-image-$ABI-amd64:amd64=$KV" "linux-image-$ABI-arm64:arm64=$KV"
        "linux-headers-$ABI-amd64:amd64=$KV" "linux-headers-$ABI-arm64:arm64=$KV" "linux-headers-$ABI-common=$KV"
        "linux-kbuild-6.1:amd64=$KV" "linux-source-6.1=$KV" "busybox-static:amd64" "busybox-static:arm64")
    (cd "$K/debs" && apt-get "${APT[@]}" download -q "${list[@]}" 2>&1 | grep -v '^W:' || true)
    n=$(ls "$K/debs"/*.deb 2>/dev/null | wc -l)
    [ "$n" -eq ${#list[@]} ] || { say "expected ${#list[@]} packages in $K/debs, got $n"; ls "$K/debs"; exit 1; }
    touch "$K/debs/.done"
fi
for a in amd64 arm64; do
    if [ ! -e "$K/mods-$a/.done" ]; then
        rm -rf "$K/mods-$a"
        dpkg-deb -x "$K/debs/linux-image-${ABI}-${a}_"*"_${a}.deb" "$K/mods-$a"
        depmod -b "$K/mods-$a" "$ABI-$a"
        touch "$K/mods-$a/.done"
    fi
    if [ ! -e "$K/busybox-$a" ]; then
        rm -rf "$K/bb"
        dpkg-deb -x "$K/debs/busybox-static_"*"_${a}.deb" "$K/bb"
        cp "$K/bb/bin/busybox" "$K/busybox-$a.tmp" && mv "$K/busybox-$a.tmp" "$K/busybox-$a"
        rm -rf "$K/bb"
    fi
done
# amd64: QEMU boots the uncompressed vmlinux (PVH entry) several seconds faster under
# TCG than the xz-compressed bzImage. arm64: the Image.gz-style vmlinuz boots directly.
if [ ! -e "$K/vmlinux-amd64" ]; then
    z=$K/mods-amd64/boot/vmlinuz-$ABI-amd64
    off=$(grep -abo $'\xfd7zXZ' "$z" | awk -F: 'NR == 1 {print $1}')
    { tail -c +$((off + 1)) "$z" | xz -dc >"$K/vmlinux-amd64.tmp" 2>/dev/null; } || true
    [ -s "$K/vmlinux-amd64.tmp" ] || { say "cannot extract vmlinux"; exit 1; }
    mv "$K/vmlinux-amd64.tmp" "$K/vmlinux-amd64"
fi
if [ ! -e "$K/hdr/.done" ]; then
    # Both architectures' headers, the shared -common tree and the (host) kbuild tools,
    # side by side; only the one absolute path, the -common Makefile, is redirected.
    rm -rf "$K/hdr"
    for d in "$K/debs"/linux-headers-*.deb "$K/debs"/linux-kbuild-*.deb; do dpkg-deb -x "$d" "$K/hdr"; done
    for a in amd64 arm64; do
        echo "include $K/hdr/usr/src/linux-headers-$ABI-common/Makefile" >"$K/hdr/usr/src/linux-headers-$ABI-$a/Makefile"
    done
    touch "$K/hdr/.done"
fi

# ---------------------------------------------------------------- gpio-sim
# Debian's kernels do not enable gpio-sim; build it (with irq_sim, which it needs)
# from the same kernel version's source as one out-of-tree module.
if [ ! -e "$K/gpiosim-src/.done" ]; then
    rm -rf "$K/gpiosim-src" "$K/lsrc"
    mkdir -p "$K/gpiosim-src" "$K/lsrc"
    s=linux-source-6.1
    dpkg-deb --fsys-tarfile "$K/debs/${s}_"*"_all.deb" | tar -xO "./usr/src/$s.tar.xz" |
        tar -xJ -C "$K/lsrc" "$s/drivers/gpio/gpio-sim.c" "$s/drivers/gpio/gpiolib.h" "$s/kernel/irq/irq_sim.c"
    cp "$K/lsrc/$s/drivers/gpio/gpio-sim.c" "$K/lsrc/$s/drivers/gpio/gpiolib.h" "$K/lsrc/$s/kernel/irq/irq_sim.c" "$K/gpiosim-src/"
    # irq_to_desc() is not exported to modules in 6.1; generic_handle_irq() is.
    sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$K/gpiosim-src/irq_sim.c"
    grep -q 'generic_handle_irq(irqnum);' "$K/gpiosim-src/irq_sim.c" || { say "irq_sim.c changed upstream; adapt the patch"; exit 1; }
    printf 'obj-m := gpio-sim-oot.o\ngpio-sim-oot-y := gpio-sim.o irq_sim.o\n' >"$K/gpiosim-src/Makefile"
    rm -rf "$K/lsrc"
    touch "$K/gpiosim-src/.done"
fi
for a in amd64 arm64; do
    out=$K/gpio-sim-$a.ko
    [ -e "$out" ] && continue
    b=$K/gpiosim-build-$a
    rm -rf "$b"
    cp -r "$K/gpiosim-src" "$b"
    if [ "$a" = amd64 ]; then cross=(); strip="strip"; else cross=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-); strip=aarch64-linux-gnu-strip; fi
    make -s -C "$K/hdr/usr/src/linux-headers-$ABI-$a" M="$b" "${cross[@]}" modules >"$b/build.log" 2>&1 ||
        { cat "$b/build.log"; exit 1; }
    $strip --strip-debug "$b/gpio-sim-oot.ko"
    cp "$b/gpio-sim-oot.ko" "$out"
    rm -rf "$b"
done
# ---------------------------------------------------------------- vicodec
# The kernel's M2M test codec (FWHT encoder and decoder): the same V4L2 M2M API as the
# Pi's H.264 encoder. Debian's kernels do not enable it; build it out of tree. It needs
# v4l2-mem2mem, which Debian's arm64 kernel ships as a module and its amd64 kernel
# lacks: there it is built into the same module.
if [ ! -e "$K/vicodec-src/.done" ]; then
    rm -rf "$K/vicodec-src" "$K/lsrc"
    mkdir -p "$K/vicodec-src" "$K/lsrc"
    s=linux-source-6.1
    dpkg-deb --fsys-tarfile "$K/debs/${s}_"*"_all.deb" | tar -xO "./usr/src/$s.tar.xz" |
        tar -xJ -C "$K/lsrc" "$s/drivers/media/test-drivers/vicodec" "$s/drivers/media/v4l2-core/v4l2-mem2mem.c"
    cp "$K/lsrc/$s/drivers/media/test-drivers/vicodec/"*.[ch] "$K/lsrc/$s/drivers/media/v4l2-core/v4l2-mem2mem.c" "$K/vicodec-src/"
    # In one module with vicodec-core.c, two `debug` parameters would clash.
    sed -i 's/^module_param(debug, bool, 0644);$/module_param_named(m2m_debug, debug, bool, 0644);/' "$K/vicodec-src/v4l2-mem2mem.c"
    grep -q 'module_param_named(m2m_debug' "$K/vicodec-src/v4l2-mem2mem.c" || { say "v4l2-mem2mem.c changed upstream; adapt the patch"; exit 1; }
    rm -rf "$K/lsrc"
    touch "$K/vicodec-src/.done"
fi
for a in amd64 arm64; do
    out=$K/vicodec-$a.ko
    [ -e "$out" ] && continue
    b=$K/vicodec-build-$a
    rm -rf "$b"
    cp -r "$K/vicodec-src" "$b"
    objs="vicodec-core.o codec-fwht.o codec-v4l2-fwht.o"
    [ -e "$K/mods-$a/lib/modules/$ABI-$a/kernel/drivers/media/v4l2-core/v4l2-mem2mem.ko" ] || objs="$objs v4l2-mem2mem.o"
    printf 'obj-m := vicodec-oot.o\nvicodec-oot-y := %s\n' "$objs" >"$b/Makefile"
    if [ "$a" = amd64 ]; then cross=(); strip="strip"; else cross=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-); strip=aarch64-linux-gnu-strip; fi
    make -s -C "$K/hdr/usr/src/linux-headers-$ABI-$a" M="$b" "${cross[@]}" modules >"$b/build.log" 2>&1 ||
        { cat "$b/build.log"; exit 1; }
    $strip --strip-debug "$b/vicodec-oot.ko"
    cp "$b/vicodec-oot.ko" "$out"
    rm -rf "$b"
done
printf 'ABI=%s\nKV=%s\nK=%s\n' "$ABI" "$KV" "$K" >"$HIL/kernel.env"
# Kernels of older ABIs are of no further use.
for d in "$HIL/kernel/"*; do [ "$d" = "$K" ] || rm -rf "$d"; done
say "kernels, modules, gpio-sim, vicodec and busybox ready in $K"
