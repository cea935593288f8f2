# Brume's kernel configuration fragment (watchdog built in, UVC and USB audio as
# modules; see brume.cfg). The image names the modules it needs (brume-image.bb).
FILESEXTRAPATHS:prepend:brume := "${THISDIR}/files:"
SRC_URI:append:brume = " file://brume.cfg"
