#!/usr/bin/env bash
# The first run, as a new user meets it (issue 12): clone this repository into a fresh
# folder beside a `shared` link, follow the README's two quick-start commands (the first
# one end to end: install, then the whole pipeline with the default training), then check
# each trap a new user fell into. Prints PASS or FAIL per check and exits 1 if any failed.
#
# Not part of CI: the first command trains the default model (minutes). Run it quietly:
#   bash scripts/first_run_check.sh               # as the README says, from a fresh clone
# Options:
#   --fast         train for one epoch instead of the default recipe (a smoke test of this
#                  script; the pipeline's timing then means nothing)
#   --no-install   skip `pip install` (offline): run the clone's code with PYTHONPATH, and
#                  run pytest on tests/test_cli.py in place of `bash scripts/test.sh`
#   --full-tests   run the whole suite as the README's second command (default: the
#                  install, ruff, mypy and tests/test_cli.py only, to save ~15 minutes)
#   --keep         keep the temporary folder (its path is printed)
# The clone is of the last commit (uncommitted changes are not in it).
set -uo pipefail

FAST=0; INSTALL=1; FULL_TESTS=0; KEEP=0
for arg in "$@"; do
  case "$arg" in
    --fast) FAST=1 ;;
    --no-install) INSTALL=0 ;;
    --full-tests) FULL_TESTS=1 ;;
    --keep) KEEP=1 ;;
    *) echo "unknown option $arg; see the top of $0" >&2; exit 2 ;;
  esac
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(cd "$SRC/../shared" 2>/dev/null && pwd -P) || {
  echo "no shared folder beside $SRC (expected $SRC/../shared/data/cifar-100-python.tar.gz)" >&2
  exit 2
}
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sconeflow-first-run.XXXXXX")
CLONE="$WORK/sconeflow"
LOG="$WORK/logs"
mkdir -p "$LOG"
ENDPOINTS_TO_DELETE=()
BACKGROUND=()

cleanup() {
  for name in "${ENDPOINTS_TO_DELETE[@]}"; do
    (cd "$CLONE" && "$PY" -m sconeflow endpoint delete "$name" >/dev/null 2>&1)
  done
  for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null; done
  if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PASSED=0; FAILED=0
result() {  # NAME PASS|FAIL DETAIL
  if [ "$2" = PASS ]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
  printf '%-4s  %-40s %s\n' "$2" "$1" "$3"
}
# An error as the README promises: exactly one stderr line `ErrorName: message`, no
# traceback, exit status 1. Usage: one_line_error STDERR_FILE STATUS [REGEX]
one_line_error() {
  local lines
  lines=$(grep -c . "$1")
  [ "$2" = 1 ] && [ "$lines" = 1 ] && ! grep -q Traceback "$1" \
    && grep -Eq '^[A-Z][A-Za-z]*(Error|Exception|Met): ' "$1" \
    && { [ -z "${3:-}" ] || grep -Eq "$3" "$1"; }
}
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
seconds_since() { echo $(( $(date +%s) - $1 )); }

echo "first-run check of $SRC at $(git -C "$SRC" rev-parse --short HEAD), in $WORK"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
ln -s "$SHARED" "$WORK/shared"
git clone -q "$SRC" "$CLONE" || { echo "git clone failed" >&2; exit 1; }
cd "$CLONE" || exit 1
unset PYTHONPATH SCONEFLOW_HOME SCONEFLOW_STORE SCONEFLOW_BUCKET AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3

# The README's quick-start block, its two lines as a user pastes them.
mapfile -t QUICK < <("$PY" - <<'EOF'
import re
readme = open("README.md").read()
section = readme.split("## Quick start", 1)[1]
block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
print("\n".join(line for line in block.splitlines() if line.strip()))
EOF
)
if [ "${#QUICK[@]}" -ne 2 ]; then
  result "README quick start has two commands" FAIL "found ${#QUICK[@]}: ${QUICK[*]}"
  exit 1
fi
FIRST=${QUICK[0]}
SECOND=${QUICK[1]}
[ "$FAST" = 1 ] && FIRST="$FIRST -p epochs=1 -p ensemble_size=1 -p retrain_full=false"

if [ "$INSTALL" = 1 ]; then
  # A fresh environment that still sees the machine's packages, so that pip installs
  # sconeflow itself and downloads only what is missing.
  "$PY" -m venv --system-site-packages "$WORK/venv" && . "$WORK/venv/bin/activate"
  PY=python
else
  FIRST=${FIRST#*&& }  # drop `pip install ... &&`, run the clone's code in place
  FIRST="$PY -m $FIRST"
  export PYTHONPATH="$CLONE/src"
fi
sconeflow() { "$PY" -m sconeflow "$@"; }  # the clone's, installed or not

# ----------------------------------------------------------- the README's first command
echo "== $FIRST"
t0=$(date +%s)
bash -c "$FIRST" >"$LOG/pipeline.out" 2>"$LOG/pipeline.err"
status=$?
took=$(seconds_since "$t0")
where=$("$PY" -c 'import sconeflow, sys; sys.stdout.write(sconeflow.__file__)' 2>/dev/null)
if [ "$status" = 0 ] && grep -q "executions succeeded" "$LOG/pipeline.out" \
  && [[ "$where" == "$CLONE"/* ]]; then
  result "quick start 1: install + pipeline" PASS "$took s end to end (log lines on stderr: $(wc -l <"$LOG/pipeline.err"))"
else
  result "quick start 1: install + pipeline" FAIL "exit $status after $took s, sconeflow from ${where:-?}; tail: $(tail -3 "$LOG/pipeline.err" | tr '\n' ' ')"
fi
sed -n '/^Summary/,$p' "$LOG/pipeline.out"

# ---------------------------------------------------------- the README's second command
if [ "$INSTALL" = 0 ]; then
  SECOND_RUN="$PY -m pytest -q -x tests/test_cli.py"
elif [ "$FULL_TESTS" = 1 ]; then
  SECOND_RUN="$SECOND"
else
  SECOND_RUN="$SECOND -q -x tests/test_cli.py"
fi
echo "== $SECOND_RUN"
t0=$(date +%s)
if bash -c "$SECOND_RUN" >"$LOG/tests.out" 2>&1; then
  result "quick start 2: tests" PASS "$(seconds_since "$t0") s: $(tail -1 "$LOG/tests.out")"
else
  result "quick start 2: tests" FAIL "$(tail -3 "$LOG/tests.out" | tr '\n' ' ')"
fi

TARBALL=../shared/data/cifar-100-python.tar.gz

# ------------------------------------- trap: the pipeline stops an endpoint it did not create
JOB=$(sconeflow train list --json 2>/dev/null | "$PY" -c '
import json, sys
jobs = [j for j in json.load(sys.stdin) if j.get("TrainingJobStatus") == "Completed"]
print(jobs[0]["TrainingJobName"] if jobs else "")')
if [ -z "$JOB" ]; then
  result "pipeline leaves a foreign endpoint" FAIL "no Completed training job to deploy"
else
  PORT=$(free_port)
  if sconeflow deploy --model "$JOB" --name scones-endpoint --port "$PORT" --workers 1 \
      >"$LOG/deploy.out" 2>&1; then
    ENDPOINTS_TO_DELETE+=(scones-endpoint)
    # A changed setting (the threshold): the pipeline deploys, runs the workflow and
    # monitors again, where it used to reuse the user's endpoint and then delete it.
    sconeflow pipeline --source "$TARBALL" --threshold 0.9 --json \
      $([ "$FAST" = 1 ] && echo "-p epochs=1 -p ensemble_size=1 -p retrain_full=false") \
      >"$LOG/pipeline2.out" 2>"$LOG/pipeline2.err"
    status=$?
    used=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("endpoint", "?"))' \
      "$LOG/pipeline2.out" 2>/dev/null)
    alive=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/ping")
    if [ "$status" = 0 ] && [ "$alive" = 200 ] && [ "$used" != scones-endpoint ]; then
      result "pipeline leaves a foreign endpoint" PASS "yours still answers /ping; the pipeline used $used"
    else
      result "pipeline leaves a foreign endpoint" FAIL "pipeline exit $status, used ${used:-?}, your endpoint's /ping: $alive"
    fi
  else
    result "pipeline leaves a foreign endpoint" FAIL "could not deploy: $(tail -2 "$LOG/deploy.out" | tr '\n' ' ')"
  fi
fi

# -------------------------------------------- trap: S3 without credentials, refused, README
# No credentials, profile or config file, and no instance-metadata lookup (the network).
NO_CREDS=(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE
  -u AWS_MAX_ATTEMPTS AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
  AWS_EC2_METADATA_DISABLED=true)
CLOSED="http://127.0.0.1:$(free_port)"
"${NO_CREDS[@]}" AWS_MAX_ATTEMPTS=1 AWS_ENDPOINT_URL="$CLOSED" "$PY" -m sconeflow --home "$WORK/s3home" \
  --store s3://scones stage --source "$TARBALL" >/dev/null 2>"$LOG/s3.err"
if one_line_error "$LOG/s3.err" $? 'credentials.*AWS_ACCESS_KEY_ID'; then
  result "S3 without credentials" PASS "$(cut -c1-90 "$LOG/s3.err")..."
else
  result "S3 without credentials" FAIL "$(head -3 "$LOG/s3.err" | tr '\n' ' ' | cut -c1-300)"
fi
"${NO_CREDS[@]}" AWS_MAX_ATTEMPTS=1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_ENDPOINT_URL="$CLOSED" \
  "$PY" -m sconeflow --home "$WORK/s3home" --store s3://scones stage --source "$TARBALL" \
  >/dev/null 2>"$LOG/s3refused.err"
if one_line_error "$LOG/s3refused.err" $? "nothing answers at $CLOSED"; then
  result "S3 connection refused" PASS "$(cut -c1-90 "$LOG/s3refused.err")..."
else
  result "S3 connection refused" FAIL "$(head -3 "$LOG/s3refused.err" | tr '\n' ' ' | cut -c1-300)"
fi
if command -v moto_server >/dev/null; then
  # The README's local S3 block as written (on another port if 9000 is taken), in a fresh
  # folder: the block that starts a local S3 server (others in the README need real AWS).
  mkdir -p "$WORK/s3clone"
  "$PY" - "$WORK/s3clone/example.sh" "$(free_port)" <<'EOF'
import re, socket, sys
block = next(b for b in re.findall(r"```bash\n(.*?)```", open("README.md").read(), re.S)
             if "--store s3://" in b and "moto_server" in b)
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", 9000))
    except OSError:
        block = block.replace("9000", sys.argv[2])
open(sys.argv[1], "w").write("trap 'kill $(jobs -p) 2>/dev/null' EXIT\nset -e\n" + block)
EOF
  (cd "$WORK/s3clone" && "${NO_CREDS[@]}" PATH="$(dirname "$(command -v "$PY")"):$PATH" bash example.sh) \
    >"$LOG/s3example.out" 2>"$LOG/s3example.err"
  if [ $? = 0 ] && grep -q "s3://scones/data/" "$LOG/s3example.out"; then
    result "README S3 example as written" PASS "$(grep -m1 -E 'Uploaded|Nothing' "$LOG/s3example.out")"
  else
    result "README S3 example as written" FAIL "$(tail -3 "$LOG/s3example.err" | tr '\n' ' ' | cut -c1-300)"
  fi
else
  result "README S3 example as written" FAIL "moto_server not installed (pip install -e '.[dev]')"
fi

# --------------------------------------------------------------- trap: a slow --help
if "$PY" benchmarks/cli_bench.py --runs 3 >"$LOG/cli_bench.out" 2>&1; then
  result "--help within 0.5 s" PASS "$(tail -1 "$LOG/cli_bench.out")"
else
  result "--help within 0.5 s" FAIL "$(tail -1 "$LOG/cli_bench.out")"
fi

# ------------------------------------------------------ trap: hyperparameter mistakes
timeout 30 "$PY" -m sconeflow train -p epoch=5 >/dev/null 2>"$LOG/hp.err"
if one_line_error "$LOG/hp.err" $? "[Dd]id you mean.*epochs"; then
  result "misspelt hyperparameter suggests" PASS "$(cut -c1-90 "$LOG/hp.err")..."
else
  result "misspelt hyperparameter suggests" FAIL "$(head -3 "$LOG/hp.err" | tr '\n' ' ' | cut -c1-300)"
fi
timeout 30 "$PY" -m sconeflow train -p learning_rate=5 >/dev/null 2>"$LOG/hp2.err"
if one_line_error "$LOG/hp2.err" $? "learning_rate"; then
  result "learning_rate=5 refused" PASS "$(cut -c1-90 "$LOG/hp2.err")..."
else
  result "learning_rate=5 refused" FAIL "$(head -3 "$LOG/hp2.err" | tr '\n' ' ' | cut -c1-300)"
fi

# ----------------------------------------------- trap: redeploy on the same port at once
if [ -n "$JOB" ]; then
  PORT=$(free_port)
  "$PY" - "$JOB" "$PORT" >"$LOG/redeploy.out" 2>&1 <<'EOF'
import http.client, subprocess, sys
job, port = sys.argv[1], int(sys.argv[2])
def cli(*args):
    return subprocess.run([sys.executable, "-m", "sconeflow", *args], capture_output=True, text=True)
first = cli("deploy", "--model", job, "--name", "redeploy-a", "--port", str(port), "--workers", "1")
assert first.returncode == 0, first.stderr
# Keep-alive connections still open when the endpoint is deleted, as a client's pool is:
# the server closes them, so their TIME_WAIT sits on the endpoint's port.
from PIL import Image
import io
buf = io.BytesIO(); Image.new("RGB", (32, 32), (90, 120, 200)).save(buf, "PNG")
conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(4)]
for c in conns:
    c.request("POST", "/invocations", buf.getvalue(), {"Content-Type": "image/png"})
    c.getresponse().read()
deleted = cli("endpoint", "delete", "redeploy-a")
for c in conns:
    c.close()
wait = sum(1 for r in open("/proc/net/tcp").read().splitlines()[1:]
           if int(r.split()[1].split(":")[1], 16) == port and r.split()[3] == "06")
again = cli("deploy", "--model", job, "--name", "redeploy-b", "--port", str(port), "--workers", "1")
cli("endpoint", "delete", "redeploy-b")
print(f"TIME_WAIT sockets on the port: {wait}")
print(again.stderr.strip() or "redeployed")
sys.exit(0 if again.returncode == 0 and wait > 0 else 1)
EOF
  if [ $? = 0 ]; then
    result "redeploy on the same port" PASS "$(tr '\n' ' ' <"$LOG/redeploy.out")"
  else
    result "redeploy on the same port" FAIL "$(tail -3 "$LOG/redeploy.out" | tr '\n' ' ' | cut -c1-300)"
  fi
else
  result "redeploy on the same port" FAIL "no Completed training job to deploy"
fi

# ------------------------------------------------------------ trap: misleading errors
"$PY" -c 'from PIL import Image; Image.new("RGB", (32, 32)).save("'"$WORK"'/photo.png")'
sconeflow --home "$WORK/pnghome" stage --source "$WORK/photo.png" >/dev/null 2>"$LOG/png.err"
if one_line_error "$LOG/png.err" $? "is a PNG image" && ! grep -qi truncated "$LOG/png.err"; then
  result "PNG as --source" PASS "$(cut -c1-90 "$LOG/png.err")..."
else
  result "PNG as --source" FAIL "$(head -3 "$LOG/png.err" | tr '\n' ' ' | cut -c1-300)"
fi
missing=""
for option in --port --source --endpoint --keep-endpoint --home --store; do
  grep -q -- "$option" README.md || missing="$missing $option"
done
if [ -z "$missing" ]; then
  result "README names the options" PASS "--port --source --endpoint --keep-endpoint --home --store"
else
  result "README names the options" FAIL "missing:$missing"
fi

echo "$PASSED passed, $FAILED failed (logs in $LOG$([ "$KEEP" = 1 ] || echo ', removed at exit; --keep keeps them'))"
[ "$FAILED" = 0 ]
