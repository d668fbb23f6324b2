#!/usr/bin/env bash
# One job's lifecycle through curl against a real pageqa api, worker and beat (offline model set, CPU), as in
# docs/api.md. Reads one MMLongBench-Doc PDF in place (MMLONGBENCH: the folder holding data/, default ../shared).
set -uo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
export PAGEQA_HOME="$WORK/home" PAGEQA_MODELS=offline PAGEQA_DEVICE=cpu PAGEQA_RECONCILE_EVERY_SECONDS=5
rm -rf "$PAGEQA_HOME"; mkdir -p "$PAGEQA_HOME/logs"
uv run pageqa services start >/dev/null
KEY=$(uv run pageqa keys create --tenant acme --name "curl demo" 2>/dev/null)
uv run pageqa worker --device cpu > "$PAGEQA_HOME/logs/worker.log" 2>&1 &
WORKER=$!
uv run pageqa beat > "$PAGEQA_HOME/logs/beat.log" 2>&1 &
BEAT=$!
uv run pageqa api --port 8765 > "$PAGEQA_HOME/logs/api.log" 2>&1 &
API=$!
until curl -s localhost:8765/v1/health >/dev/null; do sleep 0.5; done
until grep -q "ready." "$PAGEQA_HOME/logs/worker.log"; do sleep 0.5; done
H="Authorization: Bearer $KEY"
say() { printf '\n$ %s\n' "$*"; eval "$@"; echo; }
say "curl -s localhost:8765/v1/health"
PDF=${MMLONGBENCH:-../shared}/data/mmlongbench_dev/pdfs/379f44022bb27aa53efd5d322c7b57bf.pdf
cp "$PDF" $WORK/cqc-report.pdf
say "curl -s -H \"\$H\" -F files=@$WORK/cqc-report.pdf localhost:8765/v1/corpora/inspections/documents"
until curl -s -H "$H" localhost:8765/v1/corpora/inspections | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(d['pages_indexed']+d['pages_failed']<d['pages'])"; do sleep 1; done
say "curl -s -H \"\$H\" localhost:8765/v1/corpora/inspections"
cat > $WORK/questions.jsonl <<'Q'
{"custom_id": "q1", "question": "What is the telephone no for The Limes Residential Home?"}
{"custom_id": "q2", "question": "How many regulations of the HSCA 2008 are breached in all according to this report?", "document": "cqc-report.pdf"}
{"custom_id": "q3"}
{"custom_id": "q4", "question": "List the primary questions asked about the services in this report."}
{"custom_id": "q5", "question": "Who carried out the inspection?", "document": "other.pdf"}
Q
say "curl -s -H \"\$H\" -F file=@$WORK/questions.jsonl -F corpus=inspections -F priority=7 -F completion_window=2h localhost:8765/v1/jobs"
JOB=$(curl -s -H "$H" "localhost:8765/v1/jobs?limit=1" | python3 -c "import json,sys; print(json.load(sys.stdin)['data'][0]['id'])")
say "curl -s -H \"\$H\" localhost:8765/v1/jobs/$JOB"
until curl -s -H "$H" localhost:8765/v1/jobs/$JOB | grep -q '"status":"completed"'; do sleep 0.5; done
say "curl -s -H \"\$H\" localhost:8765/v1/jobs/$JOB"
say "curl -s -H \"\$H\" localhost:8765/v1/jobs/$JOB/results"
say "curl -s -H \"\$H\" 'localhost:8765/v1/jobs/$JOB/results?format=csv'"
say "curl -s -H \"\$H\" localhost:8765/v1/jobs/$JOB/errors"
say "curl -s -H \"\$H\" -X POST localhost:8765/v1/jobs/$JOB/cancel -w ' HTTP %{http_code}'"
OTHER=$(uv run pageqa keys create --tenant globex 2>/dev/null)
say "curl -s -H \"Authorization: Bearer \$OTHER\" localhost:8765/v1/jobs/$JOB -w ' HTTP %{http_code}'"
say "curl -s localhost:8765/v1/jobs -w ' HTTP %{http_code}'"
say "curl -s -H \"\$H\" 'localhost:8765/v1/jobs?limit=1&status=completed'"
kill $API; kill $BEAT; kill $WORKER; wait
uv run pageqa services stop >/dev/null
rm -rf "$WORK"
