#!/bin/sh
# bids-mini pipeline: lists what a job sees of the input dataset (busybox container).
# Usage: list_inputs.sh OUTPUT_DIR
# Writes OUTPUT_DIR/seen.txt: every file under inputs/data whose content is present
# (an annexed file that was not fetched is a broken link and is not listed), sorted,
# and prints it too, so the job's log shows it.
set -eu
export LC_ALL=C
out=${1:?usage: list_inputs.sh OUTPUT_DIR}
mkdir -p "$out"
find -L inputs/data \( -name .git -o -name .datalad \) -prune -o -type f -print \
    | sed 's|^inputs/data/||' | sort > "$out/seen.txt"
sed 's/^/seen: /' "$out/seen.txt"
