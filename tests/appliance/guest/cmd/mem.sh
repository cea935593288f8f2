# Memory of the userland: RSS and PSS (kB, from /proc/PID/smaps_rollup) of brume's
# processes and of every user process, with the control request's own shells left out.
self=$$ parent=$PPID
b_n=0 b_rss=0 b_pss=0 a_n=0 a_rss=0 a_pss=0
for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$self" ] || [ "$p" = "$parent" ] && continue
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    [ -n "$exe" ] || continue
    set -- $(awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} END {print r+0, p+0}' "$d/smaps_rollup" 2>/dev/null)
    [ $# = 2 ] || continue
    case "$(cat "$d/cmdline" 2>/dev/null | tr '\0' ' ')" in *run.cgi* | *cgi-bin*) continue ;; esac
    a_n=$((a_n + 1)) a_rss=$((a_rss + $1)) a_pss=$((a_pss + $2))
    case "$exe" in */brume) b_n=$((b_n + 1)) b_rss=$((b_rss + $1)) b_pss=$((b_pss + $2)) ;; esac
done
echo "brume procs=$b_n rss_kb=$b_rss pss_kb=$b_pss"
echo "userland procs=$a_n rss_kb=$a_rss pss_kb=$a_pss"
awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {print "system used_kb=" t-a " total_kb=" t}' /proc/meminfo
