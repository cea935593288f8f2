# A clean shutdown, as systemd does it: SIGTERM to brume's root angel (KillMode=mixed),
# wait for it (TimeoutStopSec=20); brume-clock.service's ExecStop= saves the time on
# /data; sync, unmount /data, power off.
: >/run/poweroff
pid=$(cat /run/brume.pid)
kill -TERM "$pid"
for i in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$pid" 2>/dev/null; then echo "brume still running after 20 s: SIGKILL"; kill -KILL "$pid"; sleep 1; fi
stop=$(sed -n 's/^ExecStop=//p' /lib/systemd/system/brume-clock.service)
if sh -c "$stop"; then echo "brume-clock saved $(cat /data/brume-clock 2>/dev/null)"; else echo "brume-clock save FAILED"; fi
sync
if umount /data; then echo "unmounted /data"; else mount -o remount,ro /data && echo "remounted /data read-only"; fi
echo "powering off"
(sleep 1; poweroff -f) >/dev/null 2>&1 &
