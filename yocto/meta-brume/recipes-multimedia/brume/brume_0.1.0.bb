SUMMARY = "Brume: a crash-proof live-media appliance"
DESCRIPTION = "One multicall binary that serves cameras, microphones and RTMP \
               publishers as HLS, fragmented MP4, MPEG-TS and MJPEG, with a process per input \
               and per viewer connection under angels that restart them."
HOMEPAGE = "https://example.invalid/brume"
SECTION = "multimedia"
# Brume itself is MIT or Apache-2.0. The binary links the bundled OpenH264
# (BSD-2-Clause) and fdk-aac (FDK-AAC, a licence oe-core knows) sources statically, and
# every Rust crate it depends on: their licences are BRUME_CRATE_LICENSES, generated
# from Cargo.lock into brume-licenses.inc (tests/yocto/licenses_inc.py).
require ${BPN}-licenses.inc
LICENSE = "(MIT | Apache-2.0) & BSD-2-Clause & FDK-AAC & ${BRUME_CRATE_LICENSES}"
# The tree has no licence file of its own (Cargo.toml says "MIT OR Apache-2.0"): the
# common texts, and fdk-aac's NOTICE from its crate.
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10 \
                    file://${CARGO_VENDORING_DIRECTORY}/fdk-aac-sys-0.5.0/aac/NOTICE;md5=5985e1e12f4afa710d64ed7bfd291875"
# H.264 and AAC encoders: as with ffmpeg or x264, accept with
# LICENSE_FLAGS_ACCEPTED += "commercial_brume" once the patent terms are settled.
LICENSE_FLAGS = "commercial"

DEPENDS += "alsa-lib"

# The Brume tree this layer sits in (BRUME_SRC_TREE, from conf/layer.conf), as it is
# checked out: the workspace's Cargo files, firmware/ and the web UI that build.rs
# embeds. file:// entries are checksummed file by file, so the build's signature
# follows the tree's content: the same tree gives the same sstate (reproducible,
# cacheable), and any change to it rebuilds brume. A release build can instead point
# SRC_URI at the project's repository with a fixed SRCREV in a bbappend.
# The crates first (crate://, brume-crates.inc), then the tree and the unit files.
require ${BPN}-crates.inc
# The tree's files by their paths relative to its root (kept under brume-src/).
# nooelint: oelint.vars.fileextrapaths,oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${BRUME_SRC_TREE}:"
SRC_URI += "file://Cargo.toml;subdir=brume-src \
           file://Cargo.lock;subdir=brume-src \
           file://firmware;subdir=brume-src \
           file://web/index.html;subdir=brume-src \
           file://web/ui;subdir=brume-src \
           file://brume.service \
           file://brume-tmpfiles.conf \
           file://avahi-brume.xml \
           "
S = "${UNPACKDIR}/brume-src"

inherit cargo cargo-update-recipe-crates pkgconfig systemd useradd

# A workspace: build the binary crate; the root Cargo.lock pins everything.
CARGO_SRC_DIR = "firmware/brume"
# The release profile strips symbols; let the build system strip and split debug info.
export CARGO_PROFILE_RELEASE_STRIP = "false"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${UNPACKDIR}/brume.service ${D}${systemd_system_unitdir}/brume.service
    install -d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${UNPACKDIR}/brume-tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/brume.conf
    install -d ${D}${sysconfdir}/avahi/services
    install -m 0644 ${UNPACKDIR}/avahi-brume.xml ${D}${sysconfdir}/avahi/services/brume.service
}

USERADD_PACKAGES = "${PN}"
# meta-raspberrypi's udev rules give the GPIO character devices to group gpio,
# which base-passwd does not create.
GROUPADD_PARAM:${PN} = "--system gpio"
USERADD_PARAM:${PN} = "--system --user-group --groups video,audio,gpio \
                       --home-dir /data/brume --no-create-home \
                       --shell ${base_sbindir}/nologin brume"

SYSTEMD_SERVICE:${PN} = "brume.service"

FILES:${PN} += "${nonarch_libdir}/tmpfiles.d/brume.conf"
RRECOMMENDS:${PN} += "avahi-daemon"
