SUMMARY = "Brume update bundle (RAUC)"
DESCRIPTION = "A signed RAUC bundle holding brume-image's root file system, installed \
               into the inactive slot of a board built with yocto/kas/rauc.yml."
HOMEPAGE = "https://example.invalid/brume"
LICENSE = "MIT"
# A bundle has no sources of its own: the bundle class packs the image's root file system.
SRC_URI = ""

inherit bundle

RAUC_BUNDLE_COMPATIBLE = "brume-${MACHINE}"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "Brume ${MACHINE}"
RAUC_BUNDLE_FORMAT = "verity"

RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "brume-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# Signed with RAUC_KEY_FILE / RAUC_CERT_FILE: the development pair of conf/layer.conf
# (DEVELOPMENT ONLY: its private key is in the repository) unless the build sets its own.
