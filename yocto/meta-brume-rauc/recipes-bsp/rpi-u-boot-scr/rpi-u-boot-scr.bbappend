# Brume's U-Boot script for the A/B image: the slot's root by PARTUUID (the card's
# disk id, brume-sdimage-ab.wks), the kernel from the device U-Boot booted from, so
# the same image boots from SD, USB or NVMe (meta-rauc-raspberrypi's example script
# names /dev/mmcblk0p2 and "mmc 0"). Read-only root, as in the single-root image.
FILESEXTRAPATHS:prepend:brumeos := "${THISDIR}/files:"
