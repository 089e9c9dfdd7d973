"""The S3 modules follow the collection's rules for hostile input (``_s3.aws_module``): every option, amazon.aws's
included, is checked before any request, and the error names the option and the value without a traceback.

The endpoint is a closed port: had any request been sent, the module would fail with a connection error instead
of the message naming the option."""

from __future__ import annotations

import pytest
from ansible_collections.neonops.storage.plugins.modules import s3_prefix_info, s3_prefix_release, s3_tenant_copy

TENANT_ID = "3aa8fcc61f6d357410b7de754b1d9001"
HUGE = "p" * (10 * 1024 * 1024)
NOWHERE = {
    "endpoint_url": "http://127.0.0.1:9",
    "region": "us-east-1",
    "access_key": "AKIAEXAMPLEKEYID",
    "secret_key": "example-secret-key-value",  # long: Ansible masks every occurrence of a no_log value in output
}
PAGESERVERS = [{"name": "ps-new", "api_url": "http://127.0.0.1:9", "prefix_in_bucket": "new/"}]

BASE = {
    "s3_prefix_info": (s3_prefix_info, {"bucket": "neon", "prefix_in_bucket": "old"}),
    "s3_tenant_copy": (
        s3_tenant_copy,
        {"bucket": "neon", "prefix_in_bucket": "old", "dest_prefix_in_bucket": "new", "tenant_id": TENANT_ID},
    ),
    "s3_prefix_release": (
        s3_prefix_release,
        {
            "bucket": "neon",
            "prefix_in_bucket": "old",
            "tenant_id": TENANT_ID,
            "consolidated_prefix_in_bucket": "new",
            "pageservers": PAGESERVERS,
        },
    ),
}

CASES = [
    # (module, overrides, the start of the message)
    ("s3_prefix_info", {"bucket": "neon\x00x"}, "bucket: contains a NUL character"),
    ("s3_prefix_info", {"prefix_in_bucket": HUGE}, "prefix_in_bucket: is 10485760 characters long"),
    ("s3_prefix_info", {"timeout": "nan", "pageservers": PAGESERVERS}, "timeout: must be"),
    ("s3_prefix_info", {"retries": True, "pageservers": PAGESERVERS}, "retries: must be an integer, got the boolean"),
    ("s3_prefix_info", {"retries": 10**30, "pageservers": PAGESERVERS}, "retries: must be an integer from"),
    ("s3_prefix_info", {"pageservers": [{**PAGESERVERS[0], "name": "ps\x00"}]}, "pageservers[0].name: contains a NUL"),
    ("s3_prefix_info", {"api_token": HUGE, "pageservers": PAGESERVERS}, "api_token: is 10485760 characters long"),
    ("s3_tenant_copy", {"concurrency": True}, "concurrency: must be an integer, got the boolean"),
    ("s3_tenant_copy", {"concurrency": "4\n"}, "concurrency: must be an integer written in ASCII digits"),
    ("s3_tenant_copy", {"concurrency": "\u0664"}, "concurrency: must be an integer written in ASCII digits"),
    ("s3_tenant_copy", {"dest_prefix_in_bucket": HUGE}, "dest_prefix_in_bucket: is 10485760 characters long"),
    ("s3_tenant_copy", {"bucket": "neon\x00x"}, "bucket: contains a NUL character"),
    ("s3_tenant_copy", {"endpoint_url": "http://127.0.0.1:9/\x00"}, "endpoint_url: contains a NUL character"),
    ("s3_prefix_release", {"concurrency": True}, "concurrency: must be an integer, got the boolean"),
    ("s3_prefix_release", {"retention_days": "3\n"}, "retention_days: must be an integer written in ASCII digits"),
    ("s3_prefix_release", {"bucket": "neon\x00x"}, "bucket: contains a NUL character"),
    ("s3_prefix_release", {"consolidated_prefix_in_bucket": HUGE}, "consolidated_prefix_in_bucket: is 10485760"),
]


@pytest.mark.parametrize(
    ("name", "overrides", "expected"), CASES, ids=[f"{c[0]}-{sorted(c[1])[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_hostile_options_are_refused_naming_the_option_before_any_request(
    aws_env, run_module, name, overrides, expected
):
    module, base = BASE[name]
    run = run_module(module, {**NOWHERE, **base, **overrides})

    assert run.failed, run.result
    assert run["msg"].startswith(expected), run["msg"][:300]
    assert "Traceback" not in run.raw and "exception" not in run.result, run.raw[:500]
    assert len(run.raw) < 20_000  # a 10 MB value is never echoed whole


def test_a_valid_number_as_text_still_works(aws_env, run_module):
    # The rules refuse only what is not plain ASCII digits; "8" is fine (the closed port is what fails here).
    module, base = BASE["s3_tenant_copy"]
    run = run_module(module, {**NOWHERE, **base, "concurrency": "8"})
    assert run.failed and not run["msg"].startswith("concurrency"), run["msg"][:300]
