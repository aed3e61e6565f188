#!/bin/sh
# files: the server's peak RSS (VmHWM) over a 100,000-file `sockit put -r` and its
# no-change re-run, with the partial sweep (and its hash cache pruning) every second.
# Usage (from the repository root, after make): sh bench/files_rss.sh
set -e
command -v python3 >/dev/null
W=$(mktemp -d /dev/shm/sk-rss-XXXX); mkdir $W/root $W/src
python3 - "$W/src" <<'P'
import os,sys
d=sys.argv[1]
for i in range(100):
    sd=os.path.join(d,"d%03d"%i); os.mkdir(sd)
    for j in range(1000):
        with open(os.path.join(sd,"f%04d"%j),"wb") as f: f.write(b"x"*(100+j))
P
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
build/sockit serve files 127.0.0.1:$PORT --root $W/root --no-auth --quiet --partial-ttl 4 2>/dev/null & SP=$!
sleep 0.5
/usr/bin/time -f "client %e s, maxrss %M KiB" build/sockit put -r 127.0.0.1:$PORT $W/src tree --quiet
grep -E "VmHWM|VmRSS" /proc/$SP/status
/usr/bin/time -f "re-run %e s" build/sockit put -r 127.0.0.1:$PORT $W/src tree --quiet
grep -E "VmHWM" /proc/$SP/status
find $W/root/tree -type f | wc -l
sleep 2; grep VmHWM /proc/$SP/status; ls /proc/$SP/task | wc -l; kill $SP; wait $SP || true; rm -rf $W
