cat /tmp/tone.log
