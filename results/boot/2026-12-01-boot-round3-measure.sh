#!/bin/sh
# Alternating boots of two kmodlab binaries, N each, one JSON line per boot:
#   2026-12-01-boot-round3-measure.sh BEFORE_BIN AFTER_BIN N CONFIG OUT.jsonl
# Each line: {"bin": "before"|"after", "boot_ms", "boot_breakdown_ms", "failed_checks",
# "guest_end", "supervisor_native", "loadavg"}.
set -eu
before=$1; after=$2; n=$3; config=$4; out=$5
: > "$out"
i=0
while [ "$i" -lt "$n" ]; do
  for which in before after; do
    if [ "$which" = before ]; then bin=$before; else bin=$after; fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$bin" boot --quiet --json --config "$config" 2>/dev/null \
      | jq -c --arg bin "$which" --arg load "$load" \
          '{bin: $bin, boot_ms, boot_breakdown_ms, failed_checks: ([.checks[]|select(.passed|not)]|length), guest_end, supervisor_native, loadavg: ($load|tonumber)}' >> "$out"
  done
  i=$((i + 1))
done
