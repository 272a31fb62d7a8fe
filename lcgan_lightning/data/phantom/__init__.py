"""Built-in head-CT phantom with intracranial hemorrhage, written in the BHSD / nnU-Net layout.

Each patient is a procedurally drawn head: scalp, skull (outer table, diploe, inner table), folded
cortex over white matter, sulci, fissures, ventricles, deep grey nuclei, skull base with petrous
ridges, orbits and posterior fossa, plus 1-2 hemorrhage classes drawn as 3D shapes sampled slice by
slice. Values are in HU (figures from public radiology references); the label holds lesion
voxels only (perihematomal edema is drawn but not labelled).

Geometry is computed in millimetres in a head-fixed frame, ``U`` toward the patient's left and ``V``
toward posterior, so the same patient looks the same at every ``image_size``. Small images are drawn
at a finer grid and block-averaged (partial volume), then blurred and given correlated noise.

Everything a patient gets depends only on ``(seed, patient index)``.

Modules, each importing only those above it: ``anatomy`` (anatomy and pose sampling),
``geometry`` (head-frame coordinates and distance fields), ``lesions`` (bleed sampling and
drawing), ``render`` (one slice), ``writer`` (volume record, ids, affine, NIfTI and
``dataset.json``), ``patient`` (one patient's studies), ``generate`` (the whole dataset; and
``ensure_phantom``: generated once into a data root, atomically).
"""

from lcgan_lightning.data.phantom.generate import ensure_phantom, generate_phantom
from lcgan_lightning.data.phantom.geometry import FOV_MM, SLICE_MM
from lcgan_lightning.data.phantom.lesions import EDH, IPH, IVH, SAH, SDH
from lcgan_lightning.data.phantom.patient import (
    RENDER_MIN,
    lesion_masks,
    patient_classes,
    simulate_patient,
)
from lcgan_lightning.data.phantom.writer import (
    BHSD_LABELS,
    SECOND_STUDY_PROB,
    PhantomVolume,
    dataset_json,
    phantom_affine,
    write_volume,
)

__all__ = [
    "BHSD_LABELS",
    "EDH",
    "FOV_MM",
    "IPH",
    "IVH",
    "RENDER_MIN",
    "SAH",
    "SDH",
    "SECOND_STUDY_PROB",
    "SLICE_MM",
    "PhantomVolume",
    "dataset_json",
    "ensure_phantom",
    "generate_phantom",
    "lesion_masks",
    "patient_classes",
    "phantom_affine",
    "simulate_patient",
    "write_volume",
]
