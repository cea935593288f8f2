SUMMARY = "Appliance plumbing for Brume images"
DESCRIPTION = "Grows the data partition to fill the card on first boot and \
               arms the hardware watchdog through systemd."
HOMEPAGE = "https://example.invalid/brume"
SECTION = "base"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://brume-growdata.sh;beginline=2;endline=2;md5=02e7300e8df2c32a53ae1e8d6e9d768f"

SRC_URI = "file://brume-growdata.sh \
           file://brume-growdata.service \
           file://10-brume-watchdog.conf \
           "
S = "${UNPACKDIR}"

inherit systemd allarch

do_install() {
    install -d ${D}${sbindir}
    install -m 0755 ${S}/brume-growdata.sh ${D}${sbindir}/brume-growdata
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/brume-growdata.service ${D}${systemd_system_unitdir}/brume-growdata.service
    install -d ${D}${nonarch_libdir}/systemd/system.conf.d
    install -m 0644 ${S}/10-brume-watchdog.conf ${D}${nonarch_libdir}/systemd/system.conf.d/10-brume-watchdog.conf
}

SYSTEMD_SERVICE:${PN} = "brume-growdata.service"

FILES:${PN} += "${nonarch_libdir}/systemd/system.conf.d"
RDEPENDS:${PN} = "e2fsprogs-e2fsck e2fsprogs-resize2fs util-linux-partx util-linux-sfdisk"
