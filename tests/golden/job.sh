#!/usr/bin/env bash
#SBATCH --time=01:00:00
# fairbig job body, rendered by `fairbig submit` from templates/job.sh.j2.
# The same body runs under every backend; only the header/submit file differs.
# Usage: job.sh JOB_ID   (or FAIRBIG_JOB_ID, or --array … in a SLURM array task)
set -euo pipefail
umask 022
# -- constants of this submission (quoted when rendered) ------------------------
input_url='ria+file:///data/input-store#9e1bd1c2-1111-2222-3333-444455556666'
input_git=/data/input-store/9e1/bd1c2-1111-2222-3333-444455556666
output_url=/data/output-store/9e1/bd1c2-1111-2222-3333-444455556666
storage=output-storage
lock_file=/data/output-store/.fairbig-push.lock
state_dir=/data/ana/.fairbig/work/state
log_dir=/data/ana/.fairbig/work/logs
plan_commit=0123456789abcdef0123456789abcdef01234567
results_dir=results
container=code/containers/pipeline
workdir_base='/scratch/$USER'
run_id=20260101-120000-slurm
main_branch=main
push_lock_timeout=3600
# -- the contract with fairbig's Python, rendered from it (fairbig/contract.py, ids.py) --
plan_file=.fairbig/plan.tsv
pubkey_file=.fairbig/lab-pubkey.asc
output_remote=output
branch_prefix=job-
message_format='fairbig job %s (input %s)'
cancel_mark=.cancel
workdir_prefix=fairbig-job-
workdir_fallback=/var/tmp
list_sep=,
valid_job_id() { local re='^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'; [[ $1 =~ $re ]] && [[ $1 != *..* ]] && [[ $1 != *.lock ]] && [[ $1 != *. ]]; }
bindir=/opt/fairbig/.venv/bin
export PATH="$bindir:$PATH"
# git-annex's binary itself before the venv's bin/git-annex, a Python script that execs
# it (about 21 ms of CPU per call, some 70 calls per job); MAGIC as that script sets it
annex_bindir=/opt/fairbig/.venv/lib/python3.11/site-packages/git_annex
if [ -x "$annex_bindir/git-annex" ]; then
    export PATH="$annex_bindir:$PATH"
    if [ -e "$annex_bindir/magic.mgc" ]; then export MAGIC="$annex_bindir/magic.mgc"; fi
fi
export GIT_TERMINAL_PROMPT=0
# -- site set-up from fairbig.yaml (job.env_setup) -------------------------------
module load apptainer
export TMPDIR=/scratch/tmp

# -- which job am I? ------------------------------------------------------------
# A SLURM array task is told on its command line, never through the environment
# (--export=NONE empties it): job.sh --array JOB_LIST OFFSET PER_TASK ATTEMPT runs
# its PER_TASK lines of JOB_LIST one after another, each as `job.sh JOB_ID`; a job
# cancelled before its turn is skipped.
if [ "${1:-}" = --array ]; then
    export FAIRBIG_ATTEMPT=$5
    first=$(($3 + SLURM_ARRAY_TASK_ID * $4 + 1))
    rc=0
    while IFS= read -r job_id; do
        [ -e "$state_dir/$job_id$cancel_mark" ] || bash "$0" "$job_id" </dev/null || rc=$?
    done < <(sed -n "${first},$((first + $4 - 1))p" "$2")
    exit "$rc"
fi
job_id=${1:-${FAIRBIG_JOB_ID:-}}
if ! valid_job_id "$job_id"; then
    echo "fairbig job: invalid job ID '${job_id}'" >&2
    exit 2
fi
# Logs go to one file per job whatever the backend, so status can show them.
mkdir -p "$log_dir"
exec >>"$log_dir/$job_id.log" 2>&1
backend_id=${FAIRBIG_BACKEND_ID:-${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}}
backend_id=${backend_id:-${SLURM_JOB_ID:-${CONDOR_JOB_ID:-local}}}
backend_id=$(printf '%s' "$backend_id" | tr -cd 'A-Za-z0-9._-')
host=$(hostname 2>/dev/null | tr -cd 'A-Za-z0-9._-')
# Each attempt starts with a marker, so status shows this attempt's lines, never an
# older attempt's tail (fairbig/explain.py reads it).
# (times by bash's own printf, in UTC: no date process per log line)
TZ=UTC0 printf '=== attempt %s %s %(%Y-%m-%dT%H:%M:%SZ)T ===\n' "$run_id" "$backend_id" -1
# the submit's token of this attempt: status matches this record to its claim
attempt=$(printf '%s' "${FAIRBIG_ATTEMPT:-}" | tr -cd 'A-Za-z0-9._-')
printf -v started '%(%s)T' -1
step=start
workdir=
input_state=
final=done   # the status a successful exit records (superseded: pushed nothing)
detail=
# what each measured step used (fairbig/usage.py), one line per step, beside the record;
# the container wrapper adds the runtime call's own line (step container)
export FAIRBIG_USAGE_FILE="$state_dir/$job_id.usage" FAIRBIG_PYTHON="$bindir/python"
mkdir -p "$state_dir"
: >"$FAIRBIG_USAGE_FILE"

log() { TZ=UTC0 printf '%(%Y-%m-%dT%H:%M:%SZ)T fairbig[%s] %s\n' -1 "$job_id" "$*"; }

# A small JSON record per job that `fairbig status` reads, written by Python with
# the one schema of fairbig.jobstate.JobRecord (temp file + rename: never half).
jobstep() { "$bindir/python" -m fairbig.jobstep "$@"; }
# the record's fields as they stand, its status and exit code aside
fields() {
    rec=(--job-id "$job_id" --step "$step" --host "$host" --pid "$$" --backend-id "$backend_id"
         --started "$started" --workdir "$workdir" --input-state "$input_state"
         --detail "$detail" --attempt "$attempt" --usage "$FAIRBIG_USAGE_FILE" --cpu-of "$$")
}
state() {
    fields
    jobstep record "$state_dir" --status "$1" --exit-code "${2:-}" "${rec[@]}"
}
# A step's first Python call records the step as running from the same process
# (--record): a start of it costs about 60 ms of CPU, and a job would start it some
# twelve times; `measure` runs a command measured.
step_call() { fields; jobstep "$1" --record "$state_dir" "${rec[@]}" "${@:2}"; }
measure() { step_call measure -- "$@"; }

# begin STEP [recorded]: the step's "running" record; "recorded": its first Python
# call writes it
begin() {
    step=$1
    log "step $step"
    [ "${2:-}" = recorded ] || state running
}

cleanup() {
    local rc=$?
    trap - EXIT TERM INT HUP
    if [ -n "$workdir" ] && [ -d "$workdir" ]; then
        cd /
        GNUPGHOME="$workdir/gnupg" gpgconf --kill all >/dev/null 2>&1 || true
        # directories only: rm needs them writable, and a file may be a hard link into
        # the node's template of the container dataset, whose modes stay as they are
        find "$workdir" -type d ! -perm -u+w -exec chmod u+w {} + 2>/dev/null || true
        rm -rf "$workdir"
    fi
    if [ "$rc" -eq 0 ]; then
        step=finished
        state "$final" 0
        printf -v now '%(%s)T' -1
        log "$final in $((now - started)) s"
    elif [ -e "$state_dir/$job_id$cancel_mark" ]; then
        state cancelled "$rc"
        log "cancelled during step $step"
    else
        state failed "$rc"
        log "FAILED in step $step (exit code $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# -- 1. ephemeral clone ----------------------------------------------------------
begin clone recorded
mkdir -p "${workdir_base:-${TMPDIR:-$workdir_fallback}}"
workdir=$(mktemp -d "${workdir_base:-${TMPDIR:-$workdir_fallback}}/$workdir_prefix$job_id.XXXXXX")
export FAIRBIG_CONTAINER_CACHE=${FAIRBIG_CONTAINER_CACHE:-${TMPDIR:-/tmp}/fairbig-containers-$(id -u)}
# What `datalad clone --no-checkout` of the store's URL does, without a datalad process
# (about 1.3 CPU-s per job): git's clone; origin, the store's bare repository, is no
# annex; subdatasets come from the same store. git-annex enables no special remote
# here (its ORA helper starts three times per remote, about 0.5 CPU-s each): step get
# enables the ones in the job's stores (fairbig.jobinstall).
measure sh -c 'git clone -q --no-checkout -c remote.origin.annex-ignore=true \
                   -c "datalad.get.subdataset-source-candidate-200origin=$1" "$2" "$3" &&
               git -C "$3" annex init -q --no-autoenable' \
    clone "${input_url%%#*}#{id}" "$input_git" "$workdir/ds"
cd "$workdir/ds"

# -- 2. own branch, output store, encryption key -----------------------------------
begin checkout recorded
git remote add "$output_remote" "$output_url"
# This job's row of the plan, read from the plan commit (the work tree is not checked
# out yet), then its fields (the line after the header whose ID is ours)
# (awk reads to the end: git must not die of a closed pipe under pipefail)
plan_row=$(git cat-file blob "$plan_commit:$plan_file" |
           awk -F '\t' -v id="$job_id" -v k=1 'NR > 1 && $k == id && !n++')
field() { awk -F '\t' -v n="$1" '{ print $n }' <<<"$plan_row"; }
if [ -z "$plan_row" ]; then
    echo "fairbig job: $job_id is not in the plan of commit $plan_commit" >&2
    exit 2
fi
input_state=$(field 4)
IFS=$list_sep read -r -a inputs <<<"$(field 5)"
IFS=$list_sep read -r -a outputs <<<"$(field 6)"
command=$(field 7)
# "--" makes datalad quote the line into one word, as fairbig's wrapper takes it; a
# container dataset's own call format splices it as words (see contract.CALL_FMT)
command_args=(-- "$command")
# The branch starts from a commit of the plan commit's tree without the results folder
# (fairbig.jobstep checkout): the run commit then holds this job's results only, so a
# merge reads and fetches what the job wrote, not a copy of every merged job's results.
# Outputs are checked there for what they are (no symlink on the way out of the clone)
# before anything is deleted or written.
base_commit=$(step_call checkout --plan-commit "$plan_commit" --results "$results_dir" \
              --branch "$branch_prefix$job_id" -- "${outputs[@]}")
log "checked out $base_commit: plan commit ${plan_commit:0:12} without $results_dir/"
export GNUPGHOME="$workdir/gnupg"
mkdir -m 700 "$GNUPGHOME"
# Public-key work needs no gpg-agent: its socket would live in GNUPGHOME, whose path
# in a deep node-local work dir exceeds the socket length limit, and the daemon
# would outlive a killed job. Without an agent, gpg's import exits 2 for its
# secret-key lookup alone; what counts is every lab key in the keyring afterwards.
echo no-autostart >"$GNUPGHOME/gpg.conf"
gpg --batch --quiet --import "$pubkey_file" 2>/dev/null || true
fprs() { awk -F: '$1 == "fpr" { print $10 }'; }
want=$(gpg --batch --with-colons --import-options show-only --import "$pubkey_file" \
       2>/dev/null | fprs)
have=$(gpg --batch --with-colons --list-keys 2>/dev/null | fprs)
if [ -z "$want" ] || [ -z "$have" ] || printf '%s\n' "$want" | grep -Fvxq -e "$have"; then
    echo "fairbig job: cannot import the lab's public key(s) from $pubkey_file" >&2
    exit 2
fi
git config annex.gnupg-options "--trust-model always"
run_args=()
for p in "${inputs[@]}"; do run_args+=(--input "$p"); done
for p in "${outputs[@]}"; do run_args+=(--output "$p"); done

# -- 3. only this job's inputs and the container -----------------------------------
# The datasets on their way installed with git at the commits recorded, sparse to what
# the job reads, the special remotes of the job's stores enabled (the output store's
# too, for step push-content), then `git annex get` (fairbig.jobinstall): what
# `datalad get` did, without its Python process and the remotes' helpers at init. The
# container dataset, alike for every job, is installed with its image once per node
# into FAIRBIG_CONTAINER_CACHE; a job copies it with the objects hard-linked.
begin get recorded
step_call install --store ria+file:///data/input-store --store ria+file:///data/output-store --store 'ria+file:///data/ukb store' \
    --annex-version 10.20261026 --shared code/containers/images/pipeline.sif \
    --templates "$FAIRBIG_CONTAINER_CACHE" -- "${inputs[@]}" code/containers/images/pipeline.sif

# -- 4. the pipeline, recorded -------------------------------------------------------
begin run recorded
# A job owns its outputs whole: its branch's first commit holds no results, not even
# those of an earlier run (input changed after a merge), so no stale file survives, the
# run record's parent is the state the pipeline saw and `datalad rerun` of the job
# commit alone reproduces it anywhere; the merge replaces the job's area as a whole.
measure datalad containers-run -n "$container" --explicit \
    -m "$(printf "$message_format" "$job_id" "$input_state")" "${run_args[@]}" \
    "${command_args[@]}"

# -- 5. content first: the branch must never arrive without its content --------------
begin push-content recorded
measure git annex copy --to "$storage" -- "${outputs[@]}"
missing=$(git annex find --not --in "$storage" -- "${outputs[@]}")
if [ -n "$missing" ]; then
    echo "fairbig job: content not in $storage: $missing" >&2
    exit 3
fi

# -- 6. then the branch, one pusher at a time ------------------------------------------
# Only if no newer result is in the store: a stale attempt never replaces one. Pushed
# or superseded, it records the next step, cleanup, as running.
begin push-branch recorded
rc=0
why=$(step_call push --store "$output_url" --remote "$output_remote" \
      --lock-file "$lock_file" --plan-commit "$plan_commit" --main "$main_branch" \
      --timeout "$push_lock_timeout" --replace "${FAIRBIG_REPLACE:-}" \
      --next-step cleanup) || rc=$?
if [ "$rc" -eq 10 ]; then
    final=superseded
    detail=$why
    log "superseded, nothing pushed: $why"
elif [ "$rc" -ne 0 ]; then
    exit "$rc"
fi

begin cleanup recorded
