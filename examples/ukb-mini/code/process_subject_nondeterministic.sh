#!/bin/sh
# A deliberately NON-deterministic variant of process_subject.sh, for testing
# that `fairbig rerun` catches pipelines that do not reproduce: the same
# outputs, plus a random number in summary.json. Never use it for real work.
# Usage: process_subject_nondeterministic.sh INPUT_DIR OUTPUT_DIR
set -eu
sh "$(dirname "$0")/process_subject.sh" "$@"
nonce=$(od -An -N8 -tu8 /dev/urandom | tr -d ' \n')
summary=$2/summary.json
sed "s/}\$/, \"nonce\": $nonce}/" "$summary" >"$summary.tmp"
mv "$summary.tmp" "$summary"
