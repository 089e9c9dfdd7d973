# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
# Internal to neonops.storage; may change in any release.

from __future__ import annotations


class ModuleDocFragment:
    # Descriptions only; each module states its own support level (full, partial + details, none).
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    # For modules that only read.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
"""

    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/neonops.storage.neon) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - neonops.storage.neon
"""
