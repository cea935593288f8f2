# Brume's slots: two root partitions found by label (SD, USB or NVMe alike); the data
# partition keeps RAUC's status. The keyring is RAUC_KEYRING_FILE (conf/layer.conf: the
# development certificate, DEVELOPMENT ONLY, files/rauc/README.md).
FILESEXTRAPATHS:prepend:brumeos := "${THISDIR}/files:"

do_install:prepend:brumeos() {
    sed -i "s/@@MACHINE@@/${MACHINE}/g" ${UNPACKDIR}/system.conf
}
