"""provision_pageserver registers the new node twice: the pageserver role from the host (play 2) and the playbook's
check from the controller (play 3). The storage controller answers 409 to a second registration with other addresses,
and joins them as http://<addr>:<port> (upstream storage_controller/src/node.rs), so both must send the same
addresses, an IPv6 one in brackets. Rendered here from the YAML as shipped, with Ansible's templating."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = yaml.safe_load((REPO / "playbooks" / "provision_pageserver.yml").read_text())
ROLE_VARS = yaml.safe_load((REPO / "roles" / "pageserver" / "vars" / "main.yml").read_text())


def render(expression: str, variables: dict):
    trusted = {k: trust_as_template(v) if isinstance(v, str) else v for k, v in variables.items()}
    return Templar(loader=DataLoader(), variables=trusted).template(trust_as_template(expression))


def playbook_registration(api_url: str, pg_addr: str) -> tuple[str, str]:
    task = next(t for t in PLAYBOOK[2]["tasks"] if "neonops.storage.storcon_node" in t)
    args = task["neonops.storage.storcon_node"]
    node = {"neon_api_url": api_url, "neon_pg_addr": pg_addr}
    variables = {**task["vars"], "_node": "ps4", "hostvars": {"ps4": node}}
    return render(args["listen_http_addr"], variables), render(args["listen_pg_addr"], variables)


def role_registration(api_url: str) -> str:
    play2_vars = PLAYBOOK[1]["tasks"][0]["vars"]
    advertise = render(play2_vars["pageserver_advertise_host"], {"neon_api_url": api_url})
    return render(ROLE_VARS["_pageserver_registered_host"].strip(), {"pageserver_advertise_host": advertise})


@pytest.mark.parametrize(
    ("api_url", "pg_addr", "expected"),
    [
        ("http://10.213.78.2:9898", "10.213.78.2:64000", "10.213.78.2"),
        ("https://ps4.storage.internal:9898", "ps4.storage.internal:64000", "ps4.storage.internal"),
        ("http://[fd00::4]:9898", "[fd00::4]:64000", "[fd00::4]"),
    ],
)
def test_both_registrations_send_the_same_addresses(api_url, pg_addr, expected):
    assert playbook_registration(api_url, pg_addr) == (expected, expected)
    assert role_registration(api_url) == expected
