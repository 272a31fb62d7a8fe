"""Class order, dataset label maps and intensity windows shared by every stage."""

# Our class order, everywhere: index = label value.
CLASS_NAMES: tuple[str, ...] = ("background", "IPH", "IVH", "SAH", "EDH", "SDH")
LESION_CLASSES: tuple[str, ...] = CLASS_NAMES[1:]
NUM_CLASSES = len(CLASS_NAMES)

# BHSD / nnU-Net label values -> ours. BHSD: 1 EDH, 2 IPH, 3 IVH, 4 SAH, 5 SDH.
BHSD_TO_OURS: dict[int, int] = {0: 0, 1: 4, 2: 1, 3: 2, 4: 3, 5: 5}
OURS_TO_BHSD: dict[int, int] = {v: k for k, v in BHSD_TO_OURS.items()}

# PhysioNet CT-ICH csv subtype columns -> ours.
CTICH_SUBTYPE_TO_OURS: dict[str, int] = {
    "Intraparenchymal": 1,
    "Intraventricular": 2,
    "Subarachnoid": 3,
    "Epidural": 4,
    "Subdural": 5,
}

# Stored 12-bit range and the offset real BHSD uses (uint16 stored = HU + 1024).
HU_MIN, HU_MAX = -1024, 3071
UINT16_HU_OFFSET = 1024

# (level, width) in HU.
WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "bone": (600.0, 2800.0),
}

# Segmentation networks (`model=` / `seg.model` / `judge.model`) as the report and console name them.
SEGMENTER_NAMES: dict[str, str] = {
    "fcn8s": "FCN-8s",
    "basicunet": "BasicUNet",
    "dynunet": "DynUNet (nnU-Net-style)",
}


def segmenter_name(model: str | None) -> str:
    """Display name of a segmentation network (the config name itself when it has none; FCN-8s if unset)."""
    return SEGMENTER_NAMES.get(model or "fcn8s", str(model))
