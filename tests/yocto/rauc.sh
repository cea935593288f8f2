#!/usr/bin/env bash
# RAUC bundles as the A/B image makes them, checked with RAUC's own tools (Debian's
# rauc 1.8): a bundle of a small root file system, laid out as brume-bundle_1.0.bb
# declares it (verity format, one ext4 "rootfs" image, compatible brume-<machine>)
# and signed with meta-brume-rauc's development key, is read back by `rauc info`
# against the layer's keyring; a bundle signed by another key, a keyring that is not
# the layer's and a bundle whose signature was damaged are refused. Installing into
# the slots and U-Boot's fallback need a board (board/CHECKLIST.md, section 7).
# Prints PASS:/FAIL: lines (called by tests/yocto/run.sh).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
root=$PWD
layer=$root/yocto/meta-brume-rauc
keys=$layer/files/rauc
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; }

if ! command -v rauc >/dev/null || ! command -v mksquashfs >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        for i in 1 2 3; do apt-get update -qq && break; sleep $((i * 5)); done
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            rauc squashfs-tools e2fsprogs openssl >/dev/null 2>&1
    fi
fi
if ! command -v rauc >/dev/null || ! command -v mksquashfs >/dev/null; then
    fail "rauc: rauc and squashfs-tools are not installed (apt-get install rauc squashfs-tools)"
    exit 0
fi

t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
compatible=$(sed -n 's/^compatible=//p' "$layer/recipes-core/rauc/files/system.conf" | sed 's/@@MACHINE@@/raspberrypi4-64/')
format=$(sed -n 's/^RAUC_BUNDLE_FORMAT = "\(.*\)"/\1/p' "$layer/recipes-core/bundles/brume-bundle_1.0.bb")
[ "$compatible" = brume-raspberrypi4-64 ] && [ "$format" = verity ] ||
    fail "rauc: system.conf compatible '$compatible', bundle format '$format'"

# A root file system standing in for brume-image's.
mkdir -p "$t/rootfs/usr/bin" "$t/rootfs/etc" "$t/content"
echo "brume test root" >"$t/rootfs/etc/issue"
# Some incompressible content: RAUC wants a bundle's squashfs larger than one block.
head -c 262144 /dev/urandom >"$t/rootfs/usr/bin/payload"
mkfs.ext4 -q -F -d "$t/rootfs" "$t/content/rootfs.ext4" 8M || fail "rauc: mkfs.ext4 -d"
cat >"$t/content/manifest.raucm" <<EOM
[update]
compatible=$compatible
version=0.1.0-test
description=Brume raspberrypi4-64

[bundle]
format=$format

[image.rootfs]
filename=rootfs.ext4
EOM

bundle() { # OUT KEY CERT
    rauc bundle --cert="$3" --key="$2" "$t/content" "$1" >"$t/bundle.log" 2>&1
}
if bundle "$t/brume.raucb" "$keys/development-ONLY.key.pem" "$keys/development-ONLY.cert.pem"; then
    pass "rauc: a $format bundle signed with the development key ($(stat -c %s "$t/brume.raucb") bytes)"
else
    sed 's/^/  /' "$t/bundle.log" | tail -10
    fail "rauc bundle failed"
    exit 0
fi
info=$(rauc info --output-format=shell --keyring="$keys/development-ONLY.cert.pem" "$t/brume.raucb" 2>&1)
readable=$(rauc info --keyring="$keys/development-ONLY.cert.pem" "$t/brume.raucb" 2>&1)
if grep -q "^RAUC_MF_COMPATIBLE='$compatible'" <<<"$info" && grep -q "^RAUC_MF_VERSION='0.1.0-test'" <<<"$info" &&
    grep -q "Bundle Format:[[:space:]]*$format" <<<"$readable" && grep -q "^RAUC_IMAGE_CLASS_0='rootfs'" <<<"$info"; then
    pass "rauc info: the layer's keyring verifies it: compatible $compatible, format $format, slot class rootfs"
else
    printf '%s\n' "$info" | tail -10 | sed 's/^/  /'
    fail "rauc info with the layer's keyring"
fi

# Another key pair: its bundle is refused by the layer's keyring, and the layer's
# bundle by its keyring.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout "$t/other.key" -out "$t/other.cert" \
    -subj "/CN=not Brume" >/dev/null 2>&1
bundle "$t/other.raucb" "$t/other.key" "$t/other.cert" || fail "rauc bundle with another key"
if out=$(rauc info --keyring="$keys/development-ONLY.cert.pem" "$t/other.raucb" 2>&1); then
    fail "rauc info accepted a bundle signed by another key"
else
    pass "rauc info refuses a bundle signed by another key ($(grep -io 'signature[^.]*' <<<"$out" | head -1))"
fi
if rauc info --keyring="$t/other.cert" "$t/brume.raucb" >/dev/null 2>&1; then
    fail "rauc info accepted the bundle with a keyring that is not the layer's"
else
    pass "rauc info refuses the bundle against a keyring that is not the layer's"
fi
# The signature (CMS, after the squashfs, then its size in 8 bytes) damaged in place.
cp "$t/brume.raucb" "$t/damaged.raucb"
size=$(stat -c %s "$t/damaged.raucb")
sigsize=$(tail -c 8 "$t/damaged.raucb" | od -An -tu8 --endian=big | tr -d ' ')
at=$((size - 8 - sigsize / 2))
printf '\xff' | dd of="$t/damaged.raucb" bs=1 seek="$at" conv=notrunc status=none
if rauc info --keyring="$keys/development-ONLY.cert.pem" "$t/damaged.raucb" >/dev/null 2>&1; then
    fail "rauc info accepted a bundle whose signature was damaged"
else
    pass "rauc info refuses a bundle whose signature was damaged"
fi
