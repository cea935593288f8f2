# The end of Brume's log (stdout and stderr of `brume serve` and its children).
tail -n "${1:-300}" /tmp/brume.log
