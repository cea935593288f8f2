SUMMARY = "Brume appliance image"
DESCRIPTION = "Boots into Brume: read-only root file system, writable /data \
               partition grown to fill the card, host name brume announced over mDNS."
LICENSE = "MIT"

inherit core-image

# The root never changes at run time, so a power cut cannot damage it; everything
# Brume writes (configuration, recordings, the last known time) goes to /data.
IMAGE_FEATURES:append = " read-only-rootfs"

# Everything the appliance runs, named: core-image's default IMAGE_INSTALL adds
# packagegroup-base-extended, which follows the distro features into Bluetooth, NFC,
# 3G, Wi-Fi and NFS (rpcbind listening on port 111). The distro features are set in
# yocto/kas/brume.yml; this list is the rest.
IMAGE_INSTALL = " \
    packagegroup-core-boot \
    brume \
    brume-appliance \
    avahi-daemon \
    libgpiod-tools \
    v4l-utils \
    udev-rules-rpi \
    ${BRUME_KERNEL_MODULES} \
    "

# Kernel modules Brume needs, named rather than left to the machine's "recommends"
# (kernel-modules): USB cameras (UVC), USB microphones, and on the Pi 3, 4 and Zero 2 W
# the VideoCore's V4L2 memory-to-memory H.264 encoder (bcm2835-codec) and camera
# (bcm2835-v4l2). The Pi 5 has no hardware H.264 encoder. The SoC watchdog
# (bcm2835_wdt) is built into the kernel: linux-raspberrypi_%.bbappend's brume.cfg
# makes sure of it, so it runs before systemd opens /dev/watchdog0.
BRUME_KERNEL_MODULES = "kernel-module-uvcvideo kernel-module-snd-usb-audio \
                        kernel-module-bcm2835-codec kernel-module-bcm2835-v4l2"
BRUME_KERNEL_MODULES:raspberrypi5 = "kernel-module-uvcvideo kernel-module-snd-usb-audio"

# boot (FAT) + root (ext4, read-only) + data (ext4, label BRUMEDATA, grown on first boot).
WKS_FILE = "brume-sdimage.wks"
IMAGE_FSTYPES = "wic.xz wic.bmap"
# The Raspberry Pi firmware boots the FAT partition (bootimg_partition): wic needs
# neither GRUB nor systemd-boot, which oe-core builds for every aarch64 wic image
# (WKS_FILE_DEPENDS_BOOTLOADERS; the class sets WKS_FILE_DEPENDS with ??=).
WKS_FILE_DEPENDS = "${WKS_FILE_DEPENDS_DEFAULT}"
