#!/usr/bin/env bash
# Two builds of userfan side by side: OLD and NEW are checkouts, each built (npm install && npm run build).
# Runs the iperf bench of each in turn, OLD NEW OLD NEW … ROUNDS times, one round each time, and prints each
# path's median and range per build and the ratio NEW/OLD.
#   OLD=/work/old NEW=$PWD ROUNDS=5 PATHS=userfan,userfan-1w TESTS=tcp1 bash bench/ab-builds.sh
# To make OLD: git worktree add --detach ../old COMMIT && (cd ../old && npm install && npm run build).
set -euo pipefail
: "${OLD:?OLD=checkout of the old build}" "${NEW:=$PWD}"
ROUNDS=${ROUNDS:-3}; PATHS=${PATHS:-userfan,userfan-1w}; TESTS=${TESTS:-tcp1}; SECS=${SECS:-5}
OUT=${OUT:-$(mktemp -d /tmp/userfan-ab-XXXXXX)}; mkdir -p "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for side in old new; do
    dir=$OLD; [ "$side" = new ] && dir=$NEW
    (cd "$dir" && timeout 900 node dist/bench/iperf.js --paths "$PATHS" --tests "$TESTS" --repeat 1 --seconds "$SECS" \
      --wait-quiet 5 --json "$OUT/$side-$r.json" > "$OUT/$side-$r.txt" 2>&1)
    echo "round $r: $side done"
  done
done
node -e '
const fs = require("fs"), [out, rounds] = [process.argv[1], +process.argv[2]];
const med = (a) => { const s = [...a].sort((x, y) => x - y), m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const runs = { old: {}, new: {} };
for (const side of ["old", "new"]) for (let r = 1; r <= rounds; r++) {
  for (const x of JSON.parse(fs.readFileSync(`${out}/${side}-${r}.json`, "utf8")).results) {
    const k = `${x.path} ${x.test}`; (runs[side][k] ??= []).push(x.gbps.median);
  }
}
for (const k of Object.keys(runs.old)) {
  const o = runs.old[k], n = runs.new[k] ?? [];
  const f = (a) => `${med(a).toFixed(2)} (${Math.min(...a).toFixed(2)}–${Math.max(...a).toFixed(2)})`;
  console.log(`${k.padEnd(24)} old ${f(o)}  new ${f(n)}  new/old ${(med(n) / med(o)).toFixed(3)}  [old ${o.join(" ")}; new ${n.join(" ")}]`);
}
' "$OUT" "$ROUNDS"
echo "logs: $OUT"
