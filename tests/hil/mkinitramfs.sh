#!/usr/bin/env bash
# mkinitramfs.sh ARCH OUT BRUME PROBE: the initramfs of one test guest (amd64 or arm64).
# Holds busybox, the kernel modules in load order (busybox insmod resolves nothing),
# gpio-sim, vicodec, the brume binary with the shared libraries it needs (resolved from the ELF
# files themselves, so it works the same for the cross-built aarch64 binary), ALSA's
# configuration (libasound reads it to resolve names like hw:CARD=Loopback,DEV=1),
# the guest /init, the control CGI and its commands.
set -euo pipefail
ARCH=$1 OUT=$2 BRUME=$3 PROBE=$4
HERE=$(cd "$(dirname "$0")" && pwd)
: "${HIL:?}"
# shellcheck disable=SC1091
. "$HIL/kernel.env" # ABI, K
KVER=$ABI-$ARCH
MODBASE=$K/mods-$ARCH
case $ARCH in
    amd64) multiarch=x86_64-linux-gnu ;;
    arm64) multiarch=aarch64-linux-gnu ;;
    *) echo "unknown arch $ARCH" >&2; exit 2 ;;
esac

R=$(mktemp -d "$HIL/initramfs-$ARCH.XXXXXX")
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/hil,proc,sys,dev,tmp,root,data,www/cgi-bin,hil/cmd,lib/extra,lib/$multiarch}
cp "$K/busybox-$ARCH" "$R/bin/busybox"

# Kernel modules, dependencies first, with their options.
declare -A seen opts=([vivid]="n_devs=1 node_types=0x1")
: >"$R/etc/hil/modules"
# vicodec (built out of tree) needs videodev, videobuf2-vmalloc and v4l2-mem2mem (a
# module on arm64; built into vicodec on amd64, whose kernel lacks it).
m2m=""
[ -e "$MODBASE/lib/modules/$KVER/kernel/drivers/media/v4l2-core/v4l2-mem2mem.ko" ] && m2m=v4l2-mem2mem
for m in virtio_pci virtio_net configfs vivid snd-aloop videobuf2-vmalloc $m2m; do
    while read -r _ path _; do
        rel=${path#"$MODBASE/lib/modules/$KVER/"}
        [ -n "${seen[$rel]:-}" ] && continue
        seen[$rel]=1
        mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
        cp "$path" "$R/lib/modules/$KVER/$rel"
        name=$(basename "$rel" .ko)
        echo "$rel ${opts[$name]:-}" >>"$R/etc/hil/modules"
    done < <(modprobe -d "$MODBASE" -S "$KVER" --show-depends "$m" | grep '^insmod')
done
cp "$K/gpio-sim-$ARCH.ko" "$R/lib/extra/gpio-sim.ko"
cp "$K/vicodec-$ARCH.ko" "$R/lib/extra/vicodec.ko"

# brume and the helper, with every shared library they need (NEEDED, recursively).
install -m 755 "$BRUME" "$R/usr/bin/brume"
install -m 755 "$PROBE" "$R/usr/bin/hil-probe"
# shellcheck source=elflibs.sh
. "$HERE/elflibs.sh"
elf_libs_install "$R" "$ARCH" "$BRUME" "$PROBE"

# ALSA's configuration (architecture-independent) without the UCM and topology files.
mkdir -p "$R/usr/share/alsa"
cp -r /usr/share/alsa/alsa.conf /usr/share/alsa/cards /usr/share/alsa/pcm "$R/usr/share/alsa/"

install -m 755 "$HERE/guest/init" "$R/init"
install -m 755 "$HERE/guest/run.cgi" "$R/www/cgi-bin/run"
cp "$HERE/guest/cmd/"*.sh "$R/hil/cmd/"
cp "$HERE/guest/brume-"*.json "$R/etc/hil/"
echo "${HIL_PASSWORD:?}" >"$R/etc/hil/password"

(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "hil: initramfs $ARCH: $(($(stat -c %s "$OUT") / 1024)) KiB, $(wc -l <"$R/etc/hil/modules") modules, libraries: $ELF_LIBS"
