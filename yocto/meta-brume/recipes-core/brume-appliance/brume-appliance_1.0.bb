SUMMARY = "Appliance plumbing for Brume images"
DESCRIPTION = "Grows the data partition to fill the card on first boot, arms the \
               hardware watchdog through systemd, keeps the last known time on /data \
               (no real-time clock) and ships the appliance's first configuration."
HOMEPAGE = "https://example.invalid/brume"
SECTION = "base"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://brume-growdata.sh;beginline=2;endline=2;md5=02e7300e8df2c32a53ae1e8d6e9d768f"

SRC_URI = "file://brume-growdata.sh \
           file://brume-growdata.service \
           file://10-brume-watchdog.conf \
           file://brume-clock.sh \
           file://brume-clock.service \
           file://brume-clock-save.service \
           file://brume-clock-save.timer \
           file://brume.json \
           "
S = "${UNPACKDIR}"

inherit systemd allarch

do_install() {
    install -d ${D}${sbindir}
    install -m 0755 ${S}/brume-growdata.sh ${D}${sbindir}/brume-growdata
    install -m 0755 ${S}/brume-clock.sh ${D}${sbindir}/brume-clock
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/brume-growdata.service ${D}${systemd_system_unitdir}/brume-growdata.service
    install -m 0644 ${S}/brume-clock.service ${D}${systemd_system_unitdir}/brume-clock.service
    install -m 0644 ${S}/brume-clock-save.service ${D}${systemd_system_unitdir}/brume-clock-save.service
    install -m 0644 ${S}/brume-clock-save.timer ${D}${systemd_system_unitdir}/brume-clock-save.timer
    install -d ${D}${nonarch_libdir}/systemd/system.conf.d
    install -m 0644 ${S}/10-brume-watchdog.conf ${D}${nonarch_libdir}/systemd/system.conf.d/10-brume-watchdog.conf
    # The appliance's first configuration: no stream until someone creates one (the
    # web UI offers the cameras it finds; the synthetic demo only on request).
    # brume.service copies it to /data/brume/brume.json when there is none.
    install -d ${D}${datadir}/brume
    install -m 0644 ${S}/brume.json ${D}${datadir}/brume/brume.json
}

SYSTEMD_SERVICE:${PN} = "brume-growdata.service brume-clock.service brume-clock-save.timer"

FILES:${PN} += "${nonarch_libdir}/systemd/system.conf.d ${datadir}/brume"
RDEPENDS:${PN} = "e2fsprogs-e2fsck e2fsprogs-resize2fs util-linux-partx util-linux-sfdisk"
