#!/bin/bash
# The demo search at fixed work (no time cap), another checkout's package then this one's, fresh processes.
#   benchmarks/studies/demo_vs.sh /work/wt-base [generations]   (python: $PYTHON, default /work/main/.venv/bin/python)
against=$1; generations=${2:-30}; here=$(cd "$(dirname "$0")/.." && pwd); python=${PYTHON:-/work/main/.venv/bin/python}
for tree in "$against" "$here"; do
  echo "=== $tree $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  s=$(date +%s.%N)
  (cd /tmp && PYTHONPATH=$tree $python -m metaloss_sk demo --max-time 100000 --generations "$generations" --seeds 5)
  e=$(date +%s.%N)
  echo "=== $tree wall $(echo "$e - $s" | bc) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
done
