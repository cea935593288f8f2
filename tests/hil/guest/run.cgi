#!/bin/sh
# /cgi-bin/run?NAME[&ARG...]: runs /hil/cmd/NAME.sh ARG... (names and arguments: [A-Za-z0-9_.-]).
printf 'Content-Type: text/plain\r\n\r\n'
set -f
IFS='&'
set -- $QUERY_STRING
unset IFS
for a in "$@"; do
    case "$a" in "" | *[!A-Za-z0-9_.-]*) echo "bad request"; exit 0;; esac
done
name=$1; shift
[ -f "/hil/cmd/$name.sh" ] || { echo "no such command: $name"; exit 0; }
sh "/hil/cmd/$name.sh" "$@" 2>&1
echo "exit=$?"
