#!/usr/bin/python3
"""A stand-in IP camera for the RTSP pull tests: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0) serving a live test pattern as H.264 with AAC or G.711
audio at rtsp://127.0.0.1:PORT/cam, optionally behind Digest authentication.

    rtsp_camera.py PORT [aac|pcma|pcmu|none] [USER:PASSWORD]

The picture is a ball moving over black, 640x360 at 25 fps, x264 asked for 800 kbit/s
(it needs far less), unless RTSP_CAMERA_VIDEO says otherwise: "1280x720:3000:snow" (size,
kbit/s and a videotestsrc pattern; snow needs every bit it is given). Prints "ready" once it listens; SIGTERM or SIGINT
stops it.
"""
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

SIZE, KBPS, *PATTERN = os.environ.get("RTSP_CAMERA_VIDEO", "640x360:800").split(":")
WIDTH, HEIGHT = SIZE.split("x")
PATTERN = PATTERN[0] if PATTERN else "ball"
VIDEO = (f"videotestsrc is-live=true pattern={PATTERN}"
         f" ! video/x-raw,width={WIDTH},height={HEIGHT},framerate=25/1"
         f" ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 bitrate={KBPS}"
         " ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1")
AUDIO = {
    "aac": "audio/x-raw,rate=48000,channels=2 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97",
    "pcma": "audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8",
    "pcmu": "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0",
}


def main():
    port = sys.argv[1]
    audio = sys.argv[2] if len(sys.argv) > 2 else "aac"
    creds = sys.argv[3] if len(sys.argv) > 3 else None
    Gst.init(None)
    launch = VIDEO
    if audio != "none":
        launch += " audiotestsrc is-live=true wave=sine freq=1000 ! " + AUDIO[audio]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch("( " + launch + " )")
    factory.set_shared(True)
    if creds:
        user, password = creds.split(":", 1)
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_digest(user, password, token)
        server.set_auth(auth)
        factory.add_role_from_structure(Gst.Structure.new_from_string(
            "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {port}")
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
