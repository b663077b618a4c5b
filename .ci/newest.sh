#!/usr/bin/env bash
# Report, never fail: the fast tests against the newest releases the registry offers within
# requirements.txt's bounds, in a fresh virtual environment, and which packages moved from
# requirements.lock. A new release that breaks a test shows here before a user meets it.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${MASC_NEWEST_VENV:-.ci/.venv-newest}
echo "== newest releases: fast tests (report only) =="
python3 -m venv --clear "$VENV" && "$VENV/bin/pip" install -q --upgrade \
    -r requirements.txt -r requirements-study.txt && "$VENV/bin/pip" install -q --no-deps -e . \
    || { echo "newest: install failed (report only)"; exit 0; }
"$VENV/bin/python" - <<'PY'
import subprocess, sys
def versions(lines):
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))
locked = versions(open("requirements.lock").read().splitlines())
newest = versions(subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                                 capture_output=True, text=True).stdout.splitlines())
moved = [f"{name} {locked.get(name, '-')} -> {v}" for name, v in sorted(newest.items())
         if locked.get(name) != v]
gone = [name for name in sorted(locked) if name not in newest]
print("newest: moved from the lock:", "; ".join(moved) if moved else "nothing")
if gone:
    print("newest: in the lock, not installed now:", ", ".join(gone))
PY
(source "$VENV/bin/activate" && python -m pytest -q -m "not slow" -p no:cacheprovider 2>&1 | tail -n 15) \
    || true
echo "== newest: end of report (it does not decide CI) =="
exit 0
