#!/usr/bin/env python3
"""Median/min/max per binary of boot_ms and each milestone/phase from measure-boot.sh output."""
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for which in ("before", "after"):
    rs = [r for r in rows if r["bin"] == which]
    if not rs:
        continue
    def line(name, vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return
        print(f"| {which} | {name} | {statistics.median(vals):.2f} | {min(vals):.2f} | {max(vals):.2f} | {len(vals)} |")
    line("boot_ms (process start → ready)", [r["boot_ms"] for r in rs])
    prev = None
    for key in ("vm_created_ms", "memory_ready_ms", "loaded_ms", "vcpu_ready_ms",
                "first_instruction_ms", "guest_memory_ready_ms", "ready_ms"):
        line(f"milestone {key}", [r["boot_breakdown_ms"].get(key) for r in rs])
    phases = {}
    for r in rs:
        for p in r["boot_breakdown_ms"].get("guest_phases_ms", []):
            phases.setdefault(p["phase"], []).append(p["ms"])
    for name, vals in phases.items():
        line(f"guest phase {name}", vals)
    line("load average (1 min)", [r["loadavg"] for r in rs])
    bad = [r for r in rs if r["failed_checks"] or not r["guest_end"].endswith("0x0")]
    print(f"| {which} | runs with a failed check or unclean end | {len(bad)} | | | {len(rs)} |")
