"""`make bench`: run every bench script (answer, adapter_switch, format_choice, ingest, retrieve, safety, scale)
and print one table of the ratios they report. `scale.py` builds a 10,000-document library (about 15 min
on a quiet 2-core machine); `BENCH_SCALE_SIZES=100,1000` shortens it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    rows: list[tuple[str, str, str]] = []
    for script in sorted(HERE.glob("*.py")):
        if script.name in {"run_all.py", "__init__.py"}:
            continue
        print(f"== {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        print(proc.stdout.strip())
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            rows.append((script.name, "FAILED", f"exit {proc.returncode}"))
        for line in proc.stdout.splitlines():
            if line.startswith("RATIO "):
                _, name, value = line.split(maxsplit=2)
                rows.append((script.name, name, value))
    width = max((len(r[1]) for r in rows), default=10)
    script_width = max((len(r[0]) for r in rows), default=14)
    print(f"\n{'script':<{script_width}} {'ratio':<{width}} value")
    for script, name, value in rows:
        print(f"{script:<{script_width}} {name:<{width}} {value}")
    return 0 if all(r[1] != "FAILED" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
