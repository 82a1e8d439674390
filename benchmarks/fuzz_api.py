"""The clinic API fuzzed from its OpenAPI schema (schemathesis), deeper than the test suite;
figures to docs/results/fuzz_api.json.

    python benchmarks/fuzz_api.py --examples 300 --stateful-examples 200

Runs tests/test_clinic_fuzz.py with ``--examples`` generated cases per operation in each of
the two stateless tests (robustness: no 5xx, invalid data refused; contract: status codes,
content types, bodies and headers as documented) and ``--stateful-examples`` call sequences
of up to 10 steps, chained by the links schemathesis infers from the schema. Writes the
outcome of every test and the responses counted by phase and status code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DOCS, machine_line

ROOT = Path(__file__).resolve().parents[1]
OUT = DOCS / "results" / "fuzz_api.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="cases per operation and test")
    parser.add_argument("--stateful-examples", type=int, default=200, help="call sequences")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report, junit = Path(tmp) / "responses.json", Path(tmp) / "junit.xml"
        env = {
            **os.environ,
            "EMGDX_FUZZ_EXAMPLES": str(args.examples),
            "EMGDX_FUZZ_STATEFUL_EXAMPLES": str(args.stateful_examples),
            "EMGDX_FUZZ_REPORT": str(report),
        }
        cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", "-p", "no:cacheprovider",
               "tests/test_clinic_fuzz.py", f"--junitxml={junit}"]  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        responses = json.loads(report.read_text()) if report.is_file() else {}
        tests: dict[str, str] = {}
        if junit.is_file():
            for case in ET.parse(junit).getroot().iter("testcase"):
                failed = case.find("failure") is not None or case.find("error") is not None
                tests[case.get("name", "?")] = "failed" if failed else "passed"
    server_errors = {
        phase: sum(n for code, n in by_code.items() if code.startswith("5"))
        for phase, by_code in responses.items()
    }
    doc = {
        "command": "python benchmarks/fuzz_api.py " + " ".join(sys.argv[1:]),
        "machine": machine_line("schemathesis", "hypothesis"),
        "seconds": round(seconds, 1),
        "pytest_exit_code": done.returncode,
        "tests": tests,
        "responses_by_phase_and_status": responses,
        "requests": {phase: sum(by_code.values()) for phase, by_code in responses.items()},
        "server_errors": server_errors,
        "failures": done.stdout[-4000:] if done.returncode else "",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("seconds", "tests", "requests", "server_errors")}))
    print(f"wrote {args.out}")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
