"""Privacy: personal data found and redacted offline, field policies applied before anything is
stored, retention with a verified purge, and a hash-chained audit log.

The server builds this package's feature from deploy.yaml (``modelscale.privacy.feature``,
declared as a ``modelscale.serve.features`` entry point). The exports load on first use (PEP
562): the detector compiles its patterns when it is first imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelscale.lazy import lazy_exports

if TYPE_CHECKING:
    from modelscale.privacy.audit import PrivacyAudit, cli_actor, privacy_audit
    from modelscale.privacy.detect import KINDS, Detector, Span
    from modelscale.privacy.policy import Redactor, mask
    from modelscale.privacy.retention import ClassPurge, PurgeReport, purge

_EXPORTS = {
    "KINDS": "modelscale.privacy.detect",
    "ClassPurge": "modelscale.privacy.retention",
    "Detector": "modelscale.privacy.detect",
    "PrivacyAudit": "modelscale.privacy.audit",
    "PurgeReport": "modelscale.privacy.retention",
    "Redactor": "modelscale.privacy.policy",
    "Span": "modelscale.privacy.detect",
    "cli_actor": "modelscale.privacy.audit",
    "mask": "modelscale.privacy.policy",
    "privacy_audit": "modelscale.privacy.audit",
    "purge": "modelscale.privacy.retention",
}

__all__ = [
    "KINDS",
    "ClassPurge",
    "Detector",
    "PrivacyAudit",
    "PurgeReport",
    "Redactor",
    "Span",
    "cli_actor",
    "mask",
    "privacy_audit",
    "purge",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
