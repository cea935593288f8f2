SUMMARY = "Brume appliance image"
DESCRIPTION = "Boots into Brume: read-only root file system, writable /data \
               partition grown to fill the card, host name brume announced over mDNS."
LICENSE = "MIT"

inherit core-image

# The root never changes at run time, so a power cut cannot damage it; everything
# Brume writes (configuration, recordings) goes to /data.
IMAGE_FEATURES:append = " read-only-rootfs"

IMAGE_INSTALL:append = " \
    brume \
    brume-appliance \
    avahi-daemon \
    libgpiod-tools \
    v4l-utils \
    "

# boot (FAT) + root (ext4, read-only) + data (ext4, grown on first boot).
WKS_FILE = "brume-sdimage.wks"
IMAGE_FSTYPES = "wic.bz2 wic.bmap"
