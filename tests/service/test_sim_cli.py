"""service/sim/__init__.py: the `simulate` and `replay` subcommands, and the package's torch-free imports."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.service.sim_helpers import FakeIngest, serving


def test_importing_the_sim_package_does_not_import_torch():
    code = ("import sys; import service.sim, service.sim.publisher, service.sim.simulator, service.sim.replayer; "
            "bad = [m for m in ('torch', 'models') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_parsers_have_useful_help():
    import argparse

    from service.sim import add_replay_parser, add_simulate_parser

    parser = argparse.ArgumentParser(prog="ms3m")
    sub = parser.add_subparsers()
    sim, rep = add_simulate_parser(sub), add_replay_parser(sub)
    for p, words in ((sim, ["--cells", "--rate", "--duration", "--slices", "--json", "gnb-001"]),
                     (rep, ["--root", "--speed", "--max-traces", "--as", "--json"])):
        text = p.format_help()
        assert all(w in text for w in words), text
    args = parser.parse_args(["simulate", "--cells", "10", "--rate", "500", "--kpi", "DRB.UEThpDl"])
    assert args.cells == 10 and args.rate == 500 and args.kpi == ["DRB.UEThpDl"] and callable(args.handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--rate", "5", "--speedup", "2"])
    args = parser.parse_args(["replay", "--speed", "0", "--as", "ue", "--app", "Netflix"])
    assert args.speed == 0 and args.entity == "ue" and args.app == ["Netflix"]


async def test_cli_simulate_end_to_end_json():
    fake = FakeIngest()
    code = ("import argparse, sys; from service.sim import add_simulate_parser; p = argparse.ArgumentParser(); "
            "s = p.add_subparsers(); add_simulate_parser(s); a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))")
    async with serving(fake) as target:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, "simulate", "--target", target, "--cells", "4", "--rate", "0",
            "--samples", "400", "--json", cwd=str(REPO), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    doc = json.loads(out.decode().strip().splitlines()[-1])
    assert doc["command"] == "simulate" and doc["accepted"] == 400 and doc["config"]["n_cells"] == 4
    assert "samples in" in err.decode()
    assert sum(len(m.reports) for m in fake.messages) == 400
