tail -n "${1:-200}" /tmp/brume.log
