#!/bin/sh
# A deliberately non-deterministic variant of process_subject.sh: the same
# outputs plus a random number in one file. For testing that `fairbig rerun`
# catches non-reproducible pipelines; never use it for real work.
set -eu
sh "$(dirname "$0")/process_subject.sh" "$@"
od -An -N8 -tu8 /dev/urandom | tr -d ' ' >"$2/nonce.txt"
