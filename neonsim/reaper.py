"""Stops a fleet once the process that owns it is gone.

A test run killed by a timeout never reaches its fixture teardown; without this its fleet (a dozen
processes with live workloads) would keep the machine busy until someone noticed. `up(owner_pid=...)`
starts one reaper per fleet; `down` stops it like any other process.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from neonsim import fleet as fleet_mod

POLL_S = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neonsim.reaper")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--owner", required=True, type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    directory = Path(args.dir)
    while fleet_mod.pid_alive(args.owner):
        if not (directory / "pids.json").exists():
            return 0  # the fleet was stopped normally
        time.sleep(POLL_S)
    logging.getLogger("neonsim.reaper").warning("owner pid %d is gone; stopping the fleet in %s", args.owner, directory)
    fleet_mod.down(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
