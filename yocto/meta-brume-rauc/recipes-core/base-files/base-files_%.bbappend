# A/B image: U-Boot keeps its environment (slot order, tries left) in uboot.env on the
# boot partition, which RAUC (fw_setenv) updates when it switches slots and when
# brume-rauc-mark-good marks a slot good. The partition is mounted only while that
# happens (automount, unmounted after 10 s idle, written synchronously), so a power
# cut almost never finds the FAT open; the single-root image never mounts it.
do_install:append:brumeos() {
    install -d -m 0755 ${D}/boot
    printf '%s\n' \
        '# A/B image (meta-brume-rauc): U-Boot environment, mounted only while RAUC uses it.' \
        'LABEL=boot           /boot                vfat       noauto,x-systemd.automount,x-systemd.idle-timeout=10,noatime,sync,umask=0077 0  0' \
        >>${D}${sysconfdir}/fstab
}

FILES:${PN}:append:brumeos = " /boot"
