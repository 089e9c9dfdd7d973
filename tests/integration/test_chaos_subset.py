"""A short seeded subset of the fault campaign (tests/chaos/campaign.py, `make chaos`; docs/reliability.md).

Each seed is one full iteration: its own fleet, a move under workload with one fault at one phase, reruns until the
move ends migrated or rolled back, then every invariant, including the re-attach after a restart of every
pageserver. The seeds are fixed so the subset covers several fault kinds (see SEEDS) with the cheapest options (no
prewarm, live reconfigure); a failure names the violated invariants and the one-line command that reproduces the
iteration.
"""

from __future__ import annotations

import json

import pytest

from tests.chaos.campaign import TERMINAL, plan_iteration, run_iteration

pytestmark = pytest.mark.neonsim

# seed: what its plan holds (plan_iteration(seed); the plan depends on the seed alone).
SEEDS = {
    122: "plain tenant, gc and compaction every second; the playbook is SIGKILLed in attach and the rerun resumes",
    269: "plain tenant; the source crashes during catch-up and stays down until the run ended (failover or forward)",
    # The storage controller is killed during verify and stays down until the run ended: the policy cannot be given
    # back at the end; the rerun must give it back (before the fix, the lock and its journal were gone and it did not).
    88: "plain tenant; the storage controller dies during verify until the run ended, the rerun restores its policy",
}


def test_seeds_cover_several_fault_kinds():
    kinds = {plan_iteration(seed)["fault"]["kind"] for seed in SEEDS}
    assert len(kinds) == len(SEEDS), kinds


@pytest.mark.parametrize("seed", list(SEEDS), ids=[f"seed{s}" for s in SEEDS])
def test_chaos_seed_keeps_every_invariant(seed, tmp_path):
    result = run_iteration(seed, tmp_path)

    summary = {k: result.get(k) for k in ("outcome", "runs", "fault", "violations", "harness_error", "repro", "dir")}
    assert "harness_error" not in result, json.dumps(summary, indent=1, default=str)
    assert result["violations"] == [], json.dumps(
        {**summary, "invariants": result["invariants"]}, indent=1, default=str
    )
    assert result["fault"]["injected"], summary
    assert result["outcome"] in TERMINAL, summary
