"""Audit of a synthetic set: copy rate, MiFID, precision/recall, mask fidelity, diversity."""

from lcgan_lightning.audit.core import (
    CONVENTIONS,
    AuditConfig,
    as_images,
    audit_set,
    extract_features,
)
from lcgan_lightning.audit.diversity import seed_diversity
from lcgan_lightning.audit.fidelity import mask_fidelity, memorisation_distance, mifid
from lcgan_lightning.audit.figures import closest_pairs_figure
from lcgan_lightning.audit.manifold import knn_radii, precision_recall
from lcgan_lightning.audit.neighbours import memorisation, nearest
from lcgan_lightning.audit.run import (
    audit_is_current,
    audit_summary,
    audit_synthetic_set,
    checked_set,
)

__all__ = [
    "CONVENTIONS",
    "AuditConfig",
    "as_images",
    "audit_is_current",
    "audit_set",
    "audit_summary",
    "audit_synthetic_set",
    "checked_set",
    "closest_pairs_figure",
    "extract_features",
    "knn_radii",
    "mask_fidelity",
    "memorisation",
    "memorisation_distance",
    "mifid",
    "nearest",
    "precision_recall",
    "seed_diversity",
]
