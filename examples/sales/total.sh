#!/bin/sh
# The gather: every by_region output, one path per line in TM_INPUTS_FILE.
set -eu
while IFS= read -r file; do
  cat "$file"
done < "$TM_INPUTS_FILE" |
  awk -F, -v currency="$TM_PARAM_CURRENCY" '
    { sum[$1] += $2 }
    END { for (r in sum) printf "%s,%.2f,%s\n", r, sum[r], currency }' |
  sort > "$TM_OUTPUT_DIR/total.csv"
