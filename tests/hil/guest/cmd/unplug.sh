# Unplugs the vivid camera: unbinds the driver from its platform device; as with a
# USB camera's removal, open file descriptors now fail and the node disappears.
echo vivid.0 >/sys/bus/platform/drivers/vivid/unbind || exit 1
echo "unbound; video nodes: $(ls /dev | grep '^video' | tr '\n' ' ')"
