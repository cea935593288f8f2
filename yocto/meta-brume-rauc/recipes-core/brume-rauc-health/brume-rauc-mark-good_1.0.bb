SUMMARY = "Marks the booted RAUC slot good once Brume serves"
DESCRIPTION = "A/B images (meta-brume-rauc): rauc status mark-good after Brume's API \
               has answered for a minute, a brume.service drop-in that reboots a \
               board whose Brume cannot stay up, so a bad slot falls back, and the \
               D-Bus policy that lets Brume's web UI install bundles."
HOMEPAGE = "https://example.invalid/brume"
SECTION = "base"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://brume-rauc-mark-good.sh;beginline=2;endline=2;md5=02e7300e8df2c32a53ae1e8d6e9d768f"

SRC_URI = "file://brume-rauc-mark-good.sh \
           file://brume-rauc-mark-good.service \
           file://20-rauc-fallback.conf \
           file://brume-rauc-dbus.conf \
           "
S = "${UNPACKDIR}"

inherit systemd allarch

do_install() {
    install -d ${D}${sbindir}
    install -m 0755 ${S}/brume-rauc-mark-good.sh ${D}${sbindir}/brume-rauc-mark-good
    install -d ${D}${systemd_system_unitdir}/brume.service.d
    install -m 0644 ${S}/brume-rauc-mark-good.service ${D}${systemd_system_unitdir}/brume-rauc-mark-good.service
    install -m 0644 ${S}/20-rauc-fallback.conf ${D}${systemd_system_unitdir}/brume.service.d/20-rauc-fallback.conf
    install -d ${D}${datadir}/dbus-1/system.d
    install -m 0644 ${S}/brume-rauc-dbus.conf ${D}${datadir}/dbus-1/system.d/brume-rauc.conf
}

SYSTEMD_SERVICE:${PN} = "brume-rauc-mark-good.service"

FILES:${PN} += "${systemd_system_unitdir}/brume.service.d ${datadir}/dbus-1/system.d"
RDEPENDS:${PN} = "busybox rauc"
