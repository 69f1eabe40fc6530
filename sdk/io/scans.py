"""Scan patterns the method cannot use, and the protocol a cube's field of view implies.

The method needs a raster cube: parallel, equally spaced B-scans over the optic disc ("disc"), the
macula ("macula") or both ("wide"). Readers refuse line, circle, radial and cross scans, and cubes
cut to one B-scan, with :func:`unsupported_scan`, which reports what the file records.
"""

from __future__ import annotations

from sdk.errors import UnsupportedScan

METHOD_NEEDS = (
    "the method needs a raster cube (parallel, equally spaced B-scans) of the optic disc, of the "
    "macula, or of both in one wide cube"
)
_EYES = {"OD": "right eye (OD)", "OS": "left eye (OS)"}


def unsupported_scan(path, pattern: str, *, shape=None, spacing_mm=None, laterality=None) -> UnsupportedScan:
    """The UnsupportedScan for ``path``, which holds a ``pattern`` ("Heidelberg circle scan",
    "single B-scan"), with what the file records.

    shape : (n_bscans, depth, n_ascans) as the file declares it, or None.
    spacing_mm : (bscan, axial, ascan) in mm, each None where the file does not tell (a single
        B-scan has no B-scan spacing).
    laterality : "OD", "OS" or None.
    """
    told = []
    if shape is not None:
        n_bscans, depth, n_ascans = shape
        told.append(f"{n_bscans} B-scan{'s' if n_bscans != 1 else ''} of {depth} x {n_ascans} samples")
    if spacing_mm is not None:
        names = ("B-scans", "axial samples", "A-scans")
        told += [
            f"{name} {value:.6g} mm apart"
            for name, value in zip(names, spacing_mm, strict=True)
            if value is not None
        ]
    told.append(_EYES.get(laterality, "eye not recorded"))
    return UnsupportedScan(
        f"{path} holds a {pattern} ({', '.join(told)}): {METHOD_NEEDS}",
        pattern=pattern,
        spacing_mm=None if spacing_mm is None else tuple(spacing_mm),
        laterality=laterality,
        shape=None if shape is None else tuple(int(n) for n in shape),
    )


def protocol_from_field(shape, spacing_mm) -> str | None:
    """ "wide" when the cube's en-face field holds both the disc and the macula maps, else None.

    A smaller cube may be of the disc or of the macula: its field cannot tell which, so the
    caller has to say. The sizes are the maps' own (``sdk.maps.geometry.MIN_FIELD_MM``).
    """
    from sdk.maps.geometry import MIN_FIELD_MM

    need_y_mm, need_x_mm = MIN_FIELD_MM["wide"]
    field_y_mm, field_x_mm = shape[0] * spacing_mm[0], shape[2] * spacing_mm[2]
    return "wide" if field_y_mm >= need_y_mm and field_x_mm >= need_x_mm else None
