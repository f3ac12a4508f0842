#!/usr/bin/env bash
# Rerun the study of docs/study.md on the built-in English model: every part is a `recite study` or `recite capacity`
# command whose runs are server-side data sets, so the script resumes where it stopped (run it again after a stop, a
# crash or a server restart: finished data sets are collected, not repeated). Each part's wall time goes to
# docs/study/wall-times.csv; `recite study-report docs/study` then writes the tables and figures from the results.
#
# usage: bash docs/study/run.sh            (starts `recite serve` on port 7071 with .cache/study/study.db)
#        RECITE_SERVER=http://HOST:PORT RECITE_TOKEN=… bash docs/study/run.sh   (uses a running server instead)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/study
work=.cache/study
mkdir -p "$out" "$work"
recite() { node dist/cli/main.js "$@"; }

if [ -z "${RECITE_SERVER:-}" ]; then
  # A token of its own, known to this script only: the server listens on loopback.
  RECITE_TOKEN=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
  export RECITE_TOKEN RECITE_TOKENS="$RECITE_TOKEN=study"
  node dist/cli/main.js serve --port 7071 --db "$work/study.db" 2>>"$work/serve.log" &
  server_pid=$! # node itself (not a function's subshell), so that the trap's kill stops it gracefully
  trap 'kill $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true' EXIT
  export RECITE_SERVER=http://127.0.0.1:7071
  for _ in $(seq 1 120); do recite jobs >/dev/null 2>&1 && break; kill -0 $server_pid; sleep 1; done
fi

# 50 held-out prose sentences of 4 to 8 words (9 GPT-2 tokens on average) from the Brown validation documents.
sentences="$work/sentences.txt"
recite corpus sentences --count 50 --min-words 4 --max-words 8 --prose >"$sentences"

# Every part: full (one vector per target token), RMSProp, lr 0.1 constant, greedy hit check, 300 iterations, 3 seeds,
# unless the part varies it. A setting that two parts share is one data set, computed once.
common=(--max-iters 300 --no-progress --json)
part() { # NAME COMMAND...: run one part and record its wall time, the first time it completes (a rerun that only
  # collects finished data sets keeps the time recorded; a part resumed after a stop records its last invocation)
  local name=$1; shift
  local start; start=$(date +%s.%N)
  "$@"
  local seconds; seconds=$(echo "$(date +%s.%N) - $start" | bc)
  touch "$out/wall-times.csv"
  grep -q "^$name," "$out/wall-times.csv" || { cat "$out/wall-times.csv"; echo "$name,$seconds"; } | sort >"$work/wall-times.tmp"
  [ -f "$work/wall-times.tmp" ] && mv "$work/wall-times.tmp" "$out/wall-times.csv"
  return 0
}
study() { local name=$1; shift; mkdir -p "$out/$name"; recite study "$sentences" --out "$out/$name" "${common[@]}" "$@" >"$out/$name/summary.jsonl"; }

part optimizers study optimizers --grid "optimizer=rmsprop,adam,sgd seeds=3"
part parameterization study parameterization --grid "param=full,flat,projected:16,projected:64 seeds=3"
mkdir -p "$out/capacity"
capacity() { # NAME ARGS...: one capacity search (single jobs, not a data set: a finished file is kept, not rerun)
  local name=$1; shift
  [ -s "$out/capacity/$name.json" ] && return 0
  recite capacity "$@" --param flat --max-iters 300 --json >"$work/$name.json" && mv "$work/$name.json" "$out/capacity/$name.json"
}
for seed in 0 1 2; do
  part "capacity-sentences-$seed" capacity "sentences-seed-$seed" "$sentences" --seed "$seed"
  part "capacity-reachable-$seed" capacity "reachable-seed-$seed" --reachable 50 --reachable-tokens 16 --seed "$seed"
done
part curriculum study curriculum --grid "curriculum=false,true seeds=3"
part initialization study initialization --grid "init=random,mean seeds=3"
part lr-relative study lr-relative --grid "lr-relative=false,true seeds=3"
# Time per iteration of the hit checks needs each setting alone on the machine: a server in this process, one
# setting at a time, in a database of its own.
part decode-greedy study decode-greedy --local --db "$work/decode.db" --grid "decode=greedy seeds=3"
part decode-beam study decode-beam --local --db "$work/decode.db" --grid "decode=beam:4 seeds=3"
recite score --file "$sentences" --json >"$out/score.jsonl"
recite study-report "$out"
