#!/bin/sh
# ukb-mini pipeline for one participant; runs inside the busybox container.
# Usage: process_subject.sh INPUT_DIR OUTPUT_DIR
# For every UK Biobank record INPUT_DIR/<field>_<instance>_<array>.zip it writes
# OUTPUT_DIR/<record>/{members.sha256,sizes.tsv,stats.tsv}, then
# OUTPUT_DIR/summary.json. Deterministic: same input, same bytes.
set -eu
export LC_ALL=C
in=${1:?usage: process_subject.sh INPUT_DIR OUTPUT_DIR}
out=${2:?usage: process_subject.sh INPUT_DIR OUTPUT_DIR}
mkdir -p "$out"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ukb-mini.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

records=""
n=0
for zip in "$in"/*.zip; do
    [ -e "$zip" ] || { echo "process_subject: no records in $in" >&2; exit 1; }
    record=$(basename "$zip" .zip)
    if ! unzip -qt "$zip" >/dev/null 2>&1; then
        echo "process_subject: record $record.zip is corrupt or unreadable" >&2
        exit 1
    fi
    rm -rf "$scratch/members" "$scratch/result"
    mkdir -p "$scratch/members" "$scratch/result"
    unzip -q "$zip" -d "$scratch/members"
    (
        cd "$scratch/members"
        find . -type f | sed 's|^\./||' | sort >"$scratch/list"
        while IFS= read -r member; do
            sha256sum "$member"
        done <"$scratch/list" >"$scratch/result/members.sha256"
        printf 'member\tbytes\n' >"$scratch/result/sizes.tsv"
        printf 'member\tbytes\tsum\tmean\tmin\tmax\n' >"$scratch/result/stats.tsv"
        while IFS= read -r member; do
            printf '%s\t%s\n' "$member" "$(wc -c <"$member" | tr -d ' ')" \
                >>"$scratch/result/sizes.tsv"
            od -An -v -tu1 "$member" | awk -v m="$member" '
                { for (i = 1; i <= NF; i++) { s += $i; n++
                      if (n == 1 || $i < lo) lo = $i; if ($i > hi) hi = $i } }
                END { if (n == 0) { lo = 0; hi = 0 }
                      printf "%s\t%d\t%d\t%.6f\t%d\t%d\n", m, n, s, (n ? s / n : 0), lo, hi }' \
                >>"$scratch/result/stats.tsv"
        done <"$scratch/list"
    )
    rm -rf "$out/$record"
    mv "$scratch/result" "$out/$record"
    records="$records${records:+, }\"$record\""
    n=$((n + 1))
done
printf '{"participant": "%s", "records": %d, "names": [%s]}\n' \
    "$(basename "$in")" "$n" "$records" >"$out/summary.json"
