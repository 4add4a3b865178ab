#!/usr/bin/env bash
# Reproduces every number and plot in docs/SIMULATIONS.md with one command:
#
#   scripts/reproduce-sims.sh            # results in target/sims, plots copied to docs/sim/
#   scripts/reproduce-sims.sh compare goals table   # only these parts (plots compare goals table)
#
# Builds commons-sim (release), runs each shipped scenario as it is (three seeds: the results
# table, printed at the end and written to docs/sim/results.md) and with the sweeps behind the
# plots. Every run is seeded, so the CSVs are byte-identical on every machine and every rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

# The results table at the end is written by python3 (standard library only), which Debian's
# Rust machines carry; say so in one line where it is missing rather than fail at the end.
command -v python3 >/dev/null || { echo "reproduce-sims.sh: needs python3 (apt-get install python3)" >&2; exit 1; }
source scripts/lib/common.sh

OUT=${OUT:-target/sims}
# The Sybil simulations need only the core crates: without the `network` feature the release
# build leaves out RocksDB, libp2p and Tokio (minutes instead of half an hour from nothing).
cargo build --release --locked -p commons-sim --no-default-features
SIM="$CARGO_TARGET_DIR/release/commons-sim"
RULES=policy.qualification=peer-attestations,measurers,tickets
SC=simulations/scenarios
mkdir -p "$OUT" docs/sim
PARTS=${*:-plots compare goals table}
part() { [[ " $PARTS " == *" $1 "* ]]; }

sweep() {
    local name=$1
    shift
    "$SIM" sybil --scenario "$SC/$name.toml" --out "$OUT/sweep/$name" --runs 2 --no-timing "$@"
    cp "$OUT/sweep/$name/attacker_share_vs_cost.svg" "docs/sim/$name.svg"
}

# The plots: attacker weight share against what the attacker paid, one line per policy.
if part plots; then
sweep many-keys-one-ip --sweep attacker.one-ip.keys=1..2000:9 \
    --sweep policy.ip_dedup=true,false --sweep policy.sqrt_weighting=true,false
sweep cloud-provider --sweep attacker.cloud.ips=100..8000:9 \
    --sweep policy.ipv4_prefix=16,20,24 --sweep policy.sqrt_weighting=true,false
sweep rented-ips --sweep attacker.proxies.ips=100..6000:9 \
    --sweep policy.min_uptime_epochs=30,60,90
sweep patient --sweep attacker.patient.days_held=0..150:16 \
    --sweep policy.min_uptime_epochs=30,60,90
sweep churn --sweep attacker.churn.slots=100..2000:8 --sweep policy.window_epochs=105,120,180
sweep colluding-attesters --sweep attacker.clique.keys=0..4000:9 --sweep policy.quorum=2,3,5
sweep colluding-hijack --sweep attacker.hijack.hijack_share=0..1:11 --sweep policy.quorum=3,5
fi

# The three qualification rules on the same worlds: one line per rule (compare-*.svg). The
# shipped scenarios are mainnet's measurer set (9, quorum 5, liveness 7) and 9 ticket anchors
# (20,000 tickets each, 5 needed); each sweep varies the attacker's size, the rule last.
compare() {
    local name=$1
    shift
    "$SIM" sybil --scenario "$SC/$name.toml" --out "$OUT/compare/$name" --runs 2 --no-timing \
        "$@" --sweep "$RULES"
    cp "$OUT/compare/$name/attacker_share_vs_cost.svg" "docs/sim/compare-$name.svg"
}
if part compare; then
compare many-keys-one-ip --sweep attacker.one-ip.keys=1..2000:5
compare cloud-provider --sweep attacker.cloud.ips=100..8000:6
compare rented-ips --sweep attacker.proxies.ips=100..6000:6
compare patient --sweep attacker.patient.days_held=0..150:7
compare churn --sweep attacker.churn.slots=100..2000:6
compare colluding-attesters --sweep attacker.clique.keys=0..10000:6
compare colluding-hijack --sweep attacker.hijack.hijack_share=0..1:6
compare colluding-real --sweep attacker.vouchers.ips=1..4001:5
compare colluding-measurers --sweep attacker.measurers.measurers=0..9:10
compare measurer-outage --sweep attacker.outage.measurers=0..9:10
fi

# The goals of the measurer rule (issue 11) that the sweeps above do not reach: a forged
# clique of 10,000 keys under q = 2, 3, 5, and R real nodes vouching for 10,000 made-up keys.
goal() {
    local name=$1 scenario=$2
    shift 2
    "$SIM" sybil --scenario "$SC/$scenario.toml" --out "$OUT/goals/$name" --runs 2 --no-timing \
        --quiet "$@" --sweep "$RULES"
}
if part goals; then
goal clique-10k colluding-attesters --set attacker.clique.keys=10000 --sweep policy.quorum=2,3,5
goal real-10k colluding-real --set attacker.vouchers.keys=10000 \
    --sweep attacker.vouchers.ips=1,3,10,100,1000
fi

# The table: every scenario as shipped (million.toml once: it is the scale check), and
# million.toml again under the measurer rule.
if part table; then
for scenario in many-keys-one-ip cloud-provider rented-ips patient churn colluding-attesters \
    colluding-hijack colluding-real colluding-measurers measurer-outage million; do
    runs=3
    [ "$scenario" = million ] && runs=1
    "$SIM" sybil --scenario "$SC/$scenario.toml" --out "$OUT/table/$scenario" --runs "$runs" \
        --no-timing --quiet
done
"$SIM" sybil --scenario "$SC/million.toml" --out "$OUT/table/million-measurers" --runs 1 \
    --no-timing --quiet --set policy.qualification=measurers

python3 - "$OUT/table" > docs/sim/results.md <<'PY'
import csv, sys, os
order = ["many-keys-one-ip", "cloud-provider", "rented-ips", "patient", "churn",
         "colluding-attesters", "colluding-hijack", "colluding-real", "colluding-measurers",
         "measurer-outage", "million", "million-measurers"]
print("| scenario | rule | runs | attacker keys | counted | attacker weight | honest counted | honest weight | attacker share | share without defences | honest weight lost | override | attacker cost |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in order:
    rows = list(csv.DictReader(open(os.path.join(sys.argv[1], name, "runs.csv"))))
    mean = lambda k: sum(float(r[k]) for r in rows) / len(rows)
    over = sum(r["override_triggered"] == "true" for r in rows)
    print(f"| {name} | {rows[0]['qualification']} | {len(rows)} | {mean('attacker_keys'):.0f} | {mean('attacker_counted'):.0f} "
          f"| {mean('attacker_weight'):.1f} | {mean('honest_counted'):.0f} | {mean('honest_weight'):.1f} "
          f"| {mean('attacker_share'):.4f} | {mean('attacker_share_nodefence'):.4f} "
          f"| {mean('honest_weight_lost'):.1f} | {over}/{len(rows)} | {mean('attacker_cost'):.2f} |")
PY
fi

# The rules compared: per swept scenario and rule, the cheapest point that overrode tier 2
# (mean cost over its runs, where every run overrode), the largest attacker share, and the
# range of honest nodes qualified.
part compare && python3 - "$OUT/compare" > docs/sim/compare.md <<'PY'
import csv, sys, os
order = ["many-keys-one-ip", "cloud-provider", "rented-ips", "patient", "churn",
         "colluding-attesters", "colluding-hijack", "colluding-real", "colluding-measurers",
         "measurer-outage"]
rules = ["peer-attestations", "measurers", "tickets"]
print("| scenario | swept | " + " | ".join(f"{r}: cheapest override" for r in rules)
      + " | " + " | ".join(f"{r}: largest attacker share" for r in rules) + " |")
print("|---|---|" + "---|" * (2 * len(rules)))
honest = {}
for name in order:
    rows = list(csv.DictReader(open(os.path.join(sys.argv[1], name, "runs.csv"))))
    swept = [k for k in rows[0] if k.startswith("attacker.")][0]
    points = {}
    for r in rows:
        points.setdefault((r["qualification"], r[swept]), []).append(r)
        if name not in ("colluding-measurers", "measurer-outage"):
            honest.setdefault(r["qualification"], set()).add(int(r["honest_qualified"]))
    cheapest, largest = [], []
    for rule in rules:
        mine = [(v, rs) for (q, v), rs in points.items() if q == rule]
        over = [sum(float(r["attacker_cost"]) for r in rs) / len(rs)
                for _, rs in mine if all(r["override_triggered"] == "true" for r in rs)]
        cheapest.append(f"{min(over):.2f}" if over else "none")
        largest.append(f"{max(sum(float(r['attacker_share']) for r in rs) / len(rs) for _, rs in mine):.4f}")
    values = sorted({float(v) for (_, v) in points})
    print(f"| {name} | {swept.split('.')[-1]} {values[0]:g} to {values[-1]:g} | "
          + " | ".join(cheapest) + " | " + " | ".join(largest) + " |")
print()
print("Honest nodes qualified (of 10,000) in the runs without a measurer attack: " + "; ".join(
    f"{rule} {min(honest[rule])} to {max(honest[rule])}" for rule in rules) + ".")
PY
part goals && python3 - "$OUT/goals" > docs/sim/goals.md <<'PY'
import csv, sys, os
def rows(name):
    return list(csv.DictReader(open(os.path.join(sys.argv[1], name, "runs.csv"))))
print("| run | rule | point | runs | attacker keys | attacker counted | attacker weight | weight per real address | honest qualified |")
print("|---|---|---|---|---|---|---|---|---|")
for name, key in [("clique-10k", "policy.quorum"), ("real-10k", "attacker.vouchers.ips")]:
    points = {}
    for r in rows(name):
        points.setdefault((r[key], r["qualification"]), []).append(r)
    for (value, rule), rs in points.items():
        mean = lambda k: sum(float(r[k]) for r in rs) / len(rs)
        real = mean("attacker_ips")
        per = f"{mean('attacker_weight') / real:.2f}" if real else "-"
        print(f"| {name} | {rule} | {key.split('.')[-1]} = {value} | {len(rs)} | {mean('attacker_keys'):.0f} "
              f"| {mean('attacker_counted'):.0f} | {mean('attacker_weight'):.1f} | {per} | {mean('honest_qualified'):.0f} |")
PY
cat docs/sim/results.md docs/sim/compare.md docs/sim/goals.md 2>/dev/null || true
