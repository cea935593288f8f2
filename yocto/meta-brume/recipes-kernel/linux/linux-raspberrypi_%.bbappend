# Brume's kernel configuration fragment (watchdog built in, UVC and USB audio as
# modules; see brume.cfg). The image names the modules it needs (brume-image.bb).
FILESEXTRAPATHS:prepend:brumeos := "${THISDIR}/files:"
SRC_URI:append:brumeos = " file://brume.cfg"
