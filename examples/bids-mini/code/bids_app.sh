#!/bin/sh
# bids-mini BIDS App (busybox container), called the BIDS-App way:
#   bids_app.sh BIDS_DIR OUTPUT_DIR participant --participant-label L
#               [--session-label S] [--bids-filter-file F]
# Reads what the filter file (fMRIPrep's format) lets it see of its participant, as a
# real App would: prints "read: PATH" for each file it opened; "seen: PATH" for every
# file with content present under BIDS_DIR (an annexed file that was not fetched is a
# broken link and is not listed); writes OUTPUT_DIR/sub-L[/ses-S]/sub-L[_ses-S]_scans.tsv
# (the files it read, relative to that folder, with their sizes) and, as real Apps do,
# OUTPUT_DIR/dataset_description.json and OUTPUT_DIR/logs/ once per call.
set -eu
export LC_ALL=C
usage="usage: bids_app.sh BIDS_DIR OUTPUT_DIR participant --participant-label L [--session-label S] [--bids-filter-file F]"
[ $# -ge 3 ] && [ "$3" = participant ] || { echo "$usage" >&2; exit 2; }
bids=$1 out=$2
shift 3
label= session= filter=
while [ $# -gt 0 ]; do
    case $1 in
        --participant-label) label=$2; shift 2 ;;
        --session-label) session=$2; shift 2 ;;
        --bids-filter-file) filter=$2; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
[ -n "$label" ] || { echo "$usage" >&2; exit 2; }
if [ -n "$filter" ]; then
    echo "filter: $(tr -d ' \n' < "$filter")"
    # every query of the filter names the same session (fairbig writes it so)
    from_filter=$(sed -n 's/.*"session": *"\([^"]*\)".*/\1/p' "$filter" | sort -u)
    session=${session:-$from_filter}
    [ "$session" = "$from_filter" ] || { echo "filter names session $from_filter, not $session" >&2; exit 2; }
fi
find -L "$bids" \( -name .git -o -name .datalad \) -prune -o -type f -print \
    | sed "s|^$bids/||" | sort | sed 's/^/seen: /'
sub=sub-$label
dir=$sub${session:+/ses-$session}
name=$sub${session:+_ses-$session}
mkdir -p "$out/$dir" "$out/logs"
echo '{"Name": "bids-mini App", "BIDSVersion": "1.11.2", "DatasetType": "derivative"}' \
    > "$out/dataset_description.json"
tsv=$out/$dir/${name}_scans.tsv
printf 'filename\tbytes\n' > "$tsv"
for f in $(cd "$bids" && find -L "$dir" -type f | sort); do
    printf '%s\t%s\n' "${f#"$dir"/}" "$(wc -c < "$bids/$f")" >> "$tsv"
    echo "read: $f"
done
echo "participant $label${session:+ session $session} done" > "$out/logs/$name.log"
