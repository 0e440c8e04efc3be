#!/bin/sh
# One unit: its input files, one per line in TM_INPUTS_FILE; rows whose
# amount is not a number are dropped (and counted on stderr, which
# `tmctl logs` shows). Writes region,sum to the attempt's output dir.
set -eu
while IFS= read -r file; do
  tail -n +2 "$file"
done < "$TM_INPUTS_FILE" |
  awk -F, '
    $3 ~ /^[0-9]+(\.[0-9]+)?$/ { sum[$2] += $3; next }
    { bad++ }
    END {
      for (r in sum) printf "%s,%.2f\n", r, sum[r]
      if (bad) printf "dropped %d row(s) without an amount\n", bad > "/dev/stderr"
    }' |
  sort > "$TM_OUTPUT_DIR/by_region.csv"
