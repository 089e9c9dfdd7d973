# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
# Internal to neonops.storage; may change in any release.

from __future__ import annotations


class ModuleDocFragment:
    # What the S3 modules share. The AWS options themselves (credentials, profile, region, endpoint_url,
    # validate_certs, aws_ca_bundle, aws_config) are amazon.aws's fragments: a fragment cannot pull in another, so
    # each S3 module lists amazon.aws.common.modules, amazon.aws.region.modules and amazon.aws.boto3 next to this
    # one. The argument spec that goes with it is plugins/module_utils/_s3.py (AnsibleAWSModule adds the AWS
    # options; _s3.client() builds the one S3 client).
    DOCUMENTATION = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/neonops.storage.s3) in C(module_defaults) to set the AWS options for this module.
    support: full
    membership:
      - neonops.storage.s3
notes:
  - S3 is reached with the AWS connection options of amazon.aws (region, endpoint, credentials, profiles); every
    S3 request is retried with jittered exponential backoff on throttling and transient errors, on top of the
    botocore retries that O(aws_config) sets. These modules are not in the C(neonops.storage.neon) action group.
"""

    # For the S3 modules that ask the pageservers which tenants they hold (argument spec: _s3.PAGESERVER_API_SPEC).
    PAGESERVER_API = r"""
options:
  api_token:
    description:
      - Bearer token for the pageservers' management API (scope C(pageserverapi)); omit when auth is off.
      - Falls back to E(NEONOPS_API_TOKEN).
    type: str
  ca_path:
    description:
      - PEM file of the CA that signed the pageservers' HTTPS certificates. Falls back to E(NEONOPS_CA_PATH).
      - O(validate_certs) applies to the pageservers' API as well as to S3.
    type: path
  timeout:
    description: Timeout of each pageserver API request, in seconds.
    type: float
    default: 30
  retries:
    description: Retries of a pageserver API request on connection errors and 503.
    type: int
    default: 3
"""
