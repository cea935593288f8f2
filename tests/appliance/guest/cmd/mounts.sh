# The mounts, whether the root filesystem takes a write, and the units' results.
cat /proc/mounts
if touch /.rw-probe 2>/dev/null; then rm -f /.rw-probe; echo "root: writable"; else echo "root: read-only"; fi
ls -ld /data /boot 2>&1
