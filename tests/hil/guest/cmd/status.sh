uname -a
echo "uptime: $(cat /proc/uptime)"
ls -l /dev/video* /dev/snd/ /dev/gpiochip* 2>&1
cat /proc/asound/cards
lsmod
free
ps
