#!/bin/sh
# ukb-mini pipeline for one participant; runs inside the busybox container
# (sh, awk, unzip, sha256sum, od, wc, sort, find, mktemp).
# Usage: process_subject.sh INPUT_DIR OUTPUT_DIR
# For every UK Biobank record INPUT_DIR/<field>_<instance>_<array>.zip (in
# name order) it writes OUTPUT_DIR/<field>_<instance>_<array>/
#   members.sha256  sha256sum lines of every member, sorted by member name
#   sizes.tsv       member, bytes
#   stats.tsv       member, bytes, sum, mean, min and max of the byte values
# and then OUTPUT_DIR/summary.json (subject, number of records, records).
# Deterministic: the same input gives the same bytes (no times, C locale,
# sorted lists). A corrupt record stops the script (non-zero, the record is
# named on stderr) and leaves no output folder for it.
set -eu
export LC_ALL=C
usage="usage: process_subject.sh INPUT_DIR OUTPUT_DIR"
in=${1:?$usage}
out=${2:?$usage}
fail() { echo "process_subject: $*" >&2; exit 1; }
[ -d "$in" ] || fail "no input directory $in"
mkdir -p "$out"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ukb-mini.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# one record: $1 the zip, $2 the folder to fill (empty, in the scratch area);
# run in a subshell (it changes directory)
process_record() {
    unzip -q "$1" -d "$scratch/members" >/dev/null 2>&1 || return 1
    cd "$scratch/members"
    find . -type f | sed 's|^\./||' | sort >"$scratch/list"
    [ -s "$scratch/list" ] || return 1
    printf 'member\tbytes\n' >"$2/sizes.tsv"
    printf 'member\tbytes\tsum\tmean\tmin\tmax\n' >"$2/stats.tsv"
    while IFS= read -r member; do
        sha256sum "$member" >>"$2/members.sha256"
        printf '%s\t%s\n' "$member" "$(wc -c <"$member" | tr -d ' ')" >>"$2/sizes.tsv"
        # %.0f, not %d: busybox awk's %d wraps at 2^31 (a sum over a 17 MB file)
        od -An -v -tu1 "$member" | awk -v m="$member" '
            { for (i = 1; i <= NF; i++) { v = $i + 0; s += v; n++
                  if (n == 1 || v < lo) lo = v; if (v > hi) hi = v } }
            END { if (n == 0) { lo = 0; hi = 0 }
                  printf "%s\t%.0f\t%.0f\t%.6f\t%d\t%d\n", m, n, s, (n ? s / n : 0), lo, hi }' \
            >>"$2/stats.tsv"
    done <"$scratch/list"
}

records=""
n=0
found=no
for zip in "$in"/*.zip; do
    [ -e "$zip" ] || [ -L "$zip" ] || continue  # no match (a missing annex file is not skipped)
    found=yes
    record=$(basename "$zip" .zip)
    rm -rf "$scratch/members" "$scratch/result"
    mkdir "$scratch/members" "$scratch/result"
    ok=no
    if unzip -qt "$zip" >/dev/null 2>&1; then
        # not as a condition: that would switch off set -e inside
        set +e
        (set -e; process_record "$zip" "$scratch/result")
        rc=$?
        set -e
        [ "$rc" -ne 0 ] || ok=yes
    fi
    [ "$ok" = yes ] || fail "record $record.zip is corrupt or unreadable"
    rm -rf "${out:?}/$record"
    mv "$scratch/result" "$out/$record"
    records="$records${records:+, }\"$record\""
    n=$((n + 1))
done
[ "$found" = yes ] || fail "no records (*.zip) in $in"
printf '{"subject": "%s", "n_records": %d, "records": [%s]}\n' \
    "$(basename "$in")" "$n" "$records" >"$out/summary.json"
