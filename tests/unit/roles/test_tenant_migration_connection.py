"""Every module call of the tenant_migration role gets the role's connection options from one place: the
module_defaults of the block that wraps the whole run (for the action group neonops.storage.neon)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "tenant_migration"
CONNECTION = {"validate_certs", "ca_path", "timeout", "retries"}


def tasks(node):
    """Every task dict in a task list, through block/rescue/always."""
    for task in node or []:
        yield task
        for section in ("block", "rescue", "always"):
            yield from tasks(task.get(section))


def module_calls():
    for path in sorted((ROLE / "tasks").glob("*.yml")):
        for task in tasks(yaml.safe_load(path.read_text())):
            for key in task:
                if key.startswith("neonops.storage."):
                    yield path.name, task.get("name"), key, task[key]


def test_the_run_block_sets_every_connection_option_for_the_action_group():
    main = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    run = next(t for t in main if "block" in t and "module_defaults" in t)
    defaults = run["module_defaults"]["group/neonops.storage.neon"]
    assert set(defaults) == CONNECTION
    assert "tenant_migration_ca_path" in defaults["ca_path"]
    assert "tenant_migration_api_timeout" in defaults["timeout"]
    assert "tenant_migration_api_retries" in defaults["retries"]
    assert "tenant_migration_validate_certs" in defaults["validate_certs"]


def test_no_module_call_overrides_or_bypasses_the_defaults():
    calls = list(module_calls())
    assert calls, "no module calls found"
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    group = set(runtime["action_groups"]["neon"])
    for file, name, module, args in calls:
        assert module.split(".")[-1] in group, f"{file}: {name}: {module} is not in the action group"
        assert not CONNECTION & set(args or {}), f"{file}: {name}: sets {CONNECTION & set(args)} itself"


def test_every_task_file_runs_inside_the_run_block():
    """Files other than main.yml are only reached through main.yml's block (import/include), never on their own."""
    main_text = (ROLE / "tasks" / "main.yml").read_text()
    reached = {"main.yml", "resolve.yml"}
    for path in (ROLE / "tasks").glob("*.yml"):
        if path.name in main_text:
            reached.add(path.name)
    reached |= {
        p.name
        for p in (ROLE / "tasks").glob("*.yml")
        if any(p.name in (ROLE / "tasks" / r).read_text() for r in list(reached))
    }
    assert reached == {p.name for p in (ROLE / "tasks").glob("*.yml")}
    # resolve.yml runs before the block and makes no module call of the collection.
    assert [call for call in module_calls() if call[0] == "resolve.yml"] == []
