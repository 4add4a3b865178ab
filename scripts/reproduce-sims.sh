#!/usr/bin/env bash
# Reproduces every number and plot in docs/SIMULATIONS.md with one command:
#
#   scripts/reproduce-sims.sh            # results in target/sims, plots copied to docs/sim/
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
cargo build --release --locked -p commons-sim
SIM="$CARGO_TARGET_DIR/release/commons-sim"
SC=simulations/scenarios
mkdir -p "$OUT" docs/sim

sweep() {
    local name=$1
    shift
    "$SIM" sybil --scenario "$SC/$name.toml" --out "$OUT/sweep/$name" --runs 2 --no-timing "$@"
    cp "$OUT/sweep/$name/attacker_share_vs_cost.svg" "docs/sim/$name.svg"
}

# The plots: attacker weight share against what the attacker paid, one line per policy.
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

# The table: every scenario as shipped (million.toml once: it is the scale check).
for scenario in many-keys-one-ip cloud-provider rented-ips patient churn colluding-attesters \
    colluding-hijack million; do
    runs=3
    [ "$scenario" = million ] && runs=1
    "$SIM" sybil --scenario "$SC/$scenario.toml" --out "$OUT/table/$scenario" --runs "$runs" \
        --no-timing --quiet
done

python3 - "$OUT/table" > docs/sim/results.md <<'PY'
import csv, sys, os
order = ["many-keys-one-ip", "cloud-provider", "rented-ips", "patient", "churn",
         "colluding-attesters", "colluding-hijack", "million"]
print("| scenario | runs | attacker keys | counted | attacker weight | honest counted | honest weight | attacker share | share without defences | honest weight lost | override | attacker cost |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in order:
    rows = list(csv.DictReader(open(os.path.join(sys.argv[1], name, "runs.csv"))))
    mean = lambda k: sum(float(r[k]) for r in rows) / len(rows)
    over = sum(r["override_triggered"] == "true" for r in rows)
    print(f"| {name} | {len(rows)} | {mean('attacker_keys'):.0f} | {mean('attacker_counted'):.0f} "
          f"| {mean('attacker_weight'):.1f} | {mean('honest_counted'):.0f} | {mean('honest_weight'):.1f} "
          f"| {mean('attacker_share'):.4f} | {mean('attacker_share_nodefence'):.4f} "
          f"| {mean('honest_weight_lost'):.1f} | {over}/{len(rows)} | {mean('attacker_cost'):.2f} |")
PY
cat docs/sim/results.md
