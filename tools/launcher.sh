# Sourced by the launchers (dist_run.sh, slurm_run.sh), which set ROOT first.
# PY: $PYTHON if set, else the project's .venv (made by `make setup`), else python3; WHY: the
# reason, for the launcher to print.
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
    WHY='$PYTHON'
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PY=$ROOT/.venv/bin/python
    WHY='the project venv'
elif command -v python3 >/dev/null; then
    PY=$(command -v python3)
    WHY="no $ROOT/.venv (make setup creates it)"
else
    echo "error: no Python: run 'make setup' in $ROOT, or set PYTHON" >&2
    exit 127
fi

# launch CMD...: print the command where DRY_RUN is set, else run it with the project on
# PYTHONPATH.
launch() {
    if [ -n "${DRY_RUN:-}" ]; then
        printf '%q ' "$@"
        echo
        exit 0
    fi
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$@"
}
