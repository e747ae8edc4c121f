"""wrk (Debian's package, a C load generator) as an outside client: a cross-check of
bench/loadgen.py's numbers from a client that shares no code with the project.

Closed loop only (wrk sends each connection's next request when the last one returns): per-request
latency with one keep-alive connection, throughput with a few. The request bodies cycle through a
Lua script, one body per request, in the order given. `make bench` installs wrk when it is missing
(`apt-get install wrk`); without it the phase is skipped and says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def available() -> str | None:
    return shutil.which("wrk")


def script(bodies: list[dict], path: str, out: Path, mode: str | None = None) -> Path:
    """A wrk Lua script posting ``bodies`` (with ``mode`` when given) to ``path`` in turn."""
    rows = [json.dumps(b | ({"mode": mode} if mode else {})) for b in bodies]
    quoted = ",\n".join(f"[==[{row}]==]" for row in rows)
    out.write_text(
        f"local bodies = {{\n{quoted}\n}}\n"
        "local i = 0\n"
        'local headers = {["Content-Type"] = "application/json"}\n'
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        f'  return wrk.format("POST", "{path}", headers, bodies[i])\n'
        "end\n"
    )
    return out


def run(url: str, lua: Path, *, connections: int, seconds: float) -> dict:
    """One wrk run; its latency percentiles, requests per second and non-2xx count."""
    argv = [available() or "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    argv += ["--latency", "-s", str(lua), url]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse(proc.stdout) | {"connections": connections}


def parse(text: str) -> dict:
    """wrk's --latency report as numbers (milliseconds)."""
    out: dict = {
        f"p{p}_ms": round(float(v) * _UNITS[u], 3) for p, v, u in _PERCENTILE.findall(text)
    }
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["requests_per_second"] = float(rps.group(1)) if rps else None
    out["requests"] = int(total.group(1)) if total else None
    out["non_2xx"] = int(bad.group(1)) if bad else 0
    return out
