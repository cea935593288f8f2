# Brume's fstab (labels, /data checked at boot, /boot not mounted) and the /data mount
# point: the root is read-only, so systemd cannot create it at boot.
FILESEXTRAPATHS:prepend:brumeos := "${THISDIR}/${BPN}:"

do_install:append:brumeos() {
    install -d -m 0755 ${D}/data
}

FILES:${PN}:append:brumeos = " /data"
