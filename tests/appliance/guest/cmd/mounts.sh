# The mounts, and whether the root filesystem takes a write.
cat /proc/mounts
if touch /.rw-probe 2>/dev/null; then rm -f /.rw-probe; echo "root: writable"; else echo "root: read-only"; fi
