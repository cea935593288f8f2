# cmdline.txt (the Raspberry Pi firmware passes it to the kernel; APPEND is not used).
# The root by PARTUUID (wic's --diskid in brume-sdimage.wks, partition 2), so the card
# boots from SD, USB or NVMe alike; mounted read-only from the start.
CMDLINE_ROOT_PARTITION:brumeos = "PARTUUID=4252554d-02"
CMDLINE_ROOTFS:brumeos = "root=${CMDLINE_ROOT_PARTITION} ${CMDLINE_ROOT_FSTYPE} rootwait ro"
# meta-raspberrypi uses CMDLINE_CMA without a default: empty, the device tree's CMA
# size (vc4-kms overlay) is kept.
CMDLINE_CMA:brumeos = ""
