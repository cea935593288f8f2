# gpio LINE pull-up|pull-down: sets what the outside world pulls a gpio-sim line to,
# as a wired button would (pull-down = pressed, for a button to ground). Without a
# second argument, prints the line's value (for an output: what the program drives).
C=/sys/kernel/config/gpio-sim/hil
dev=$(cat $C/dev_name) chip=$(cat $C/bank0/chip_name)
d=/sys/devices/platform/$dev/$chip/sim_gpio$1
[ -d "$d" ] || { echo "no line $1 on $chip"; exit 1; }
case "${2:-}" in
    pull-up | pull-down) echo "$2" >"$d/pull" && echo "line $1 $2" ;;
    "") echo "value $(cat "$d/value")" ;;
    *) echo "pull-up or pull-down"; exit 1 ;;
esac
