#!/bin/sh
# Sums the rows of the run's day (TM_PARAM_DS, the logical time's date)
# in this unit's input file; other days' rows are not this run's.
set -eu
while IFS= read -r file; do
  tail -n +2 "$file"
done < "$TM_INPUTS_FILE" |
  awk -F, -v ds="$TM_PARAM_DS" '
    $1 == ds && $3 ~ /^[0-9]+(\.[0-9]+)?$/ { sum += $3; rows++ }
    END { printf "%s,%d,%.2f\n", ds, rows, sum }' > "$TM_OUTPUT_DIR/report.csv"
