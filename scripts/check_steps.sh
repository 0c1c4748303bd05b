# The numbered steps of the device checks (check_gpu.sh, check_vulkan.sh), sourced by them:
# a step runs when its number is in $STEPS, its output is shown and kept in $OUT, and a
# step that fails (or runs past $STEP_TIMEOUT seconds, 0: no limit) is listed at the end.
#
#   steps_init DEFAULT_OUT "DEFAULT STEPS"; if step "2. title"; then run NAME LOG cmd...; fi; steps_end NAME

steps_init() {
    OUT=${OUT:-$1}
    mkdir -p "$OUT"
    STEP_TIMEOUT=${STEP_TIMEOUT:-0}
    STEPS=" ${STEPS:-$2} "
    FAILED=()
}

# step "N. title": true when step N is among $STEPS
step() { echo; echo "== $1"; [[ "$STEPS" == *" ${1%%.*} "* ]] || { echo "(not in STEPS)"; return 1; }; }

# run NAME LOG COMMAND...: the command's output shown and kept in $OUT/LOG
run() {
    local name=$1 log=$2; shift 2
    if ! timeout -k 5 "$STEP_TIMEOUT" "$@" > >(tee "$OUT/$log") 2>&1; then FAILED+=("$name"); fi
}

# steps_end SCRIPT: the verdict (exit status 1 when a step failed)
steps_end() {
    echo
    if [ ${#FAILED[@]} -gt 0 ]; then
        echo "$1: FAILED: ${FAILED[*]} (results in $OUT/)"
        exit 1
    fi
    echo "$1: every step passed; results in $OUT/"
}
