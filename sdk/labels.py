"""Class names and the stacking feature layout: the one place they are defined."""

from sdk.maps.network_input import MAP_NAMES

CLASSES = ("normal", "FI", "GE", "MY", "SS")  # the five answers, in probability order
GLAUCOMA_TYPES = CLASSES[1:]  # Nicolela optic-disc types
STAGE1_CLASSES = ("normal", "glaucoma")
STAGE2_CLASSES = GLAUCOMA_TYPES
CLASS_DESCRIPTIONS = {
    "normal": "normal",
    "FI": "focal ischemic glaucomatous disc",
    "GE": "generalized enlargement of the cup",
    "MY": "myopic glaucomatous disc",
    "SS": "senile sclerotic glaucomatous disc",
}


def stacking_features() -> tuple[str, ...]:
    """Names of the 20 stacker inputs: per map, stage-1 P(normal) then the four stage-2 type
    probabilities, maps in MAP_NAMES order."""
    names = []
    for map_name in MAP_NAMES:
        names.append(f"{map_name}.stage1.normal")
        names.extend(f"{map_name}.stage2.{t}" for t in STAGE2_CLASSES)
    return tuple(names)
