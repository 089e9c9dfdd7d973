#!/usr/bin/env bash
# make demo: start the default neonsim fleet with a live workload, move tenant "plain" from ps1 to ps2 with
# neonops.storage.migrate_tenant, print the report and the workload's verdict, stop the fleet.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
py="$repo/.venv/bin/python"
[[ -x "$py" ]] || { echo "demo: run 'make deps' first (no $py)" >&2; exit 1; }

export ANSIBLE_COLLECTIONS_PATH="$repo/.collections"
export ANSIBLE_PYTHON_INTERPRETER="$py"
export ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-1}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"

fleet_dir="${DEMO_FLEET_DIR:-$repo/.neonsim/demo}"
report_dir="${DEMO_REPORT_DIR:-$repo/reports}"
source_ps="${DEMO_SOURCE:-ps1}"
dest_ps="${DEMO_DESTINATION:-ps2}"

stop_fleet() { "$py" -m neonsim down --dir "$fleet_dir" >/dev/null 2>&1 || true; }
trap stop_fleet EXIT
stop_fleet
rm -rf "$fleet_dir"
mkdir -p "$report_dir"

echo "== starting the default neonsim fleet in $fleet_dir"
"$py" -m neonsim up --topology default --dir "$fleet_dir" 2>&1 | tail -n 2

# The tenant to move and its compute (the default topology runs a workload on compute1 against "plain").
read -r tenant compute_url < <("$py" - "$fleet_dir" <<'PY'
import json, sys
fleet = json.load(open(f"{sys.argv[1]}/fleet.json"))
tenant = next((t for t in fleet["tenants"] if t.get("name") == "plain"), fleet["tenants"][0])
compute = next(c for c in fleet["computes"] if c["tenant_id"] == tenant["tenant_id"])
print(tenant["tenant_id"], f"http://127.0.0.1:{compute['http_port']}")
PY
)

workload() { "$py" -c "import json,sys,urllib.request as u; print(json.dumps(json.load(u.urlopen('$compute_url/sim/workload'))))"; }
echo "== waiting for the workload on $compute_url to acknowledge writes"
for _ in $(seq 1 120); do
    acked=$(workload | "$py" -c "import json,sys; print(json.load(sys.stdin).get('writes_acked', 0))")
    [[ "$acked" -ge 20 ]] && break
    sleep 0.5
done

echo "== migrating tenant $tenant from $source_ps to $dest_ps (workload running)"
started=$(date +%s)
rc=0
ansible-playbook -i "$fleet_dir/inventory.yml" neonops.storage.migrate_tenant \
    -e tenant_migration_tenant_id="$tenant" \
    -e tenant_migration_source="$source_ps" -e tenant_migration_destination="$dest_ps" \
    -e tenant_migration_report_dir="$report_dir" || rc=$?

report="$(ls -t "$report_dir"/*.md 2>/dev/null | head -n 1 || true)"
if [[ -n "$report" && $(stat -c %Y "$report") -ge $started ]]; then
    echo; echo "== report: $report"; cat "$report"
fi

echo; echo "== workload verdict"
verdict=0
"$py" - "$compute_url" <<'PY' || verdict=$?
import json, sys, urllib.request
url = sys.argv[1]
during = json.load(urllib.request.urlopen(f"{url}/sim/workload"))
req = urllib.request.Request(f"{url}/sim/workload", data=json.dumps({"action": "verify", "timeout_ms": 10000}).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
verified = json.load(urllib.request.urlopen(req, timeout=120))
lat = during.get("read_latency_ms") or {}
print(f"writes acknowledged {during['writes_acked']}, failed writes {during['writes_failed']}")
print(f"reads ok {during['reads_ok']}, failed reads {during['reads_failed']} "
      f"(p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms)")
print(f"lost acknowledged writes: {verified['lost_writes']}")
sys.exit(0 if during["reads_failed"] == 0 and verified["lost_writes"] == 0 else 3)
PY
[[ $rc -eq 0 ]] || { echo "demo: the migration playbook failed (rc $rc)" >&2; exit "$rc"; }
exit "$verdict"
