"""The paper's published numbers (Tables 1–3), for side-by-side comparison in the report only."""

from __future__ import annotations

from typing import Any

PAPER: dict[str, Any] = {
    "full": {
        "dsc": 0.628,
        "precision": 0.850,
        "recall": 0.802,
        "per_class_dsc": {"IPH": 0.842, "IVH": 0.760, "SAH": 0.657, "EDH": 0.872, "SDH": 0.817},
    },
    "fractions": {
        "0.025": {
            "original": {"dsc": 0.244, "precision": 0.408, "recall": 0.360,
                         "per_class_dsc": {"IPH": 0.772, "IVH": 0.186, "SAH": 0.246, "EDH": 0.424, "SDH": 0.558}},
            "gan": {"dsc": 0.323, "precision": 0.519, "recall": 0.479,
                    "per_class_dsc": {"IPH": 0.773, "IVH": 0.513, "SAH": 0.456, "EDH": 0.672, "SDH": 0.602}},
            "traditional": {"dsc": 0.352, "precision": 0.549, "recall": 0.502,
                            "per_class_dsc": {"IPH": 0.782, "IVH": 0.553, "SAH": 0.481, "EDH": 0.612, "SDH": 0.635}},
            "both": {"dsc": 0.371, "precision": 0.607, "recall": 0.540,
                     "per_class_dsc": {"IPH": 0.777, "IVH": 0.517, "SAH": 0.529, "EDH": 0.708, "SDH": 0.642}},
        },
        "0.1": {
            "original": {"dsc": 0.478, "precision": 0.695, "recall": 0.681,
                         "per_class_dsc": {"IPH": 0.809, "IVH": 0.682, "SAH": 0.629, "EDH": 0.716, "SDH": 0.690}},
            "gan": {"dsc": 0.489, "precision": 0.719, "recall": 0.684,
                    "per_class_dsc": {"IPH": 0.816, "IVH": 0.685, "SAH": 0.630, "EDH": 0.738, "SDH": 0.691}},
            "traditional": {"dsc": 0.529, "precision": 0.762, "recall": 0.724,
                            "per_class_dsc": {"IPH": 0.818, "IVH": 0.702, "SAH": 0.645, "EDH": 0.768, "SDH": 0.737}},
            "both": {"dsc": 0.538, "precision": 0.766, "recall": 0.737,
                     "per_class_dsc": {"IPH": 0.821, "IVH": 0.715, "SAH": 0.636, "EDH": 0.775, "SDH": 0.752}},
        },
        "0.25": {
            "original": {"dsc": 0.565, "precision": 0.809, "recall": 0.747,
                         "per_class_dsc": {"IPH": 0.829, "IVH": 0.737, "SAH": 0.654, "EDH": 0.811, "SDH": 0.767}},
            "gan": {"dsc": 0.571, "precision": 0.810, "recall": 0.757,
                    "per_class_dsc": {"IPH": 0.832, "IVH": 0.748, "SAH": 0.652, "EDH": 0.832, "SDH": 0.766}},
            "traditional": {"dsc": 0.580, "precision": 0.834, "recall": 0.763,
                            "per_class_dsc": {"IPH": 0.828, "IVH": 0.737, "SAH": 0.652, "EDH": 0.837, "SDH": 0.781}},
            "both": {"dsc": 0.581, "precision": 0.844, "recall": 0.777,
                     "per_class_dsc": {"IPH": 0.832, "IVH": 0.750, "SAH": 0.653, "EDH": 0.837, "SDH": 0.780}},
        },
    },
}
