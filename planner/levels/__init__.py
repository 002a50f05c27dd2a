"""Vertebral level labelling: propose every lumbar level present with its landmarks (LPS mm).

:func:`propose_levels` finds the vertebral bodies T12-S1 (and a transitional L6 or a sacralised L5
when the user says so) in a CT or MR volume and returns :class:`planner.plan.Level` objects whose
:class:`~planner.plan.Landmarks` hold, for each vertebra: body centre, superior and inferior endplate
centres, posterior and anterior wall midpoints at mid-height on the midline, and left and right
pedicle centres.

How it works (in working copies of the volume resampled through the volume's own ``ijk_to_lps``; results
are returned in LPS mm):

**CT** (no click):

1. **Spine curve.** The mid-sagittal plane is found per axial slice as the centre of the bone near the body's
   midline; in that plane a dynamic-programming track follows the anterior column (bright body/disc column
   with the dark canal behind it and the posterior elements behind that), and the posterior wall of the
   column is taken where the intensity falls to the canal level.
2. **Discs.** The volume is straightened along the curve (rows perpendicular to the posterior wall). A disc is
   a thin dark band crossing the column, tilted by up to ``DetectionParams.disc_max_tilt_deg``, with brighter
   bone (the endplates) on both sides (:func:`~planner.levels.discs.disc_scores`); a dynamic programme picks
   the chain of such bands whose spacing is that of vertebrae (``disc_spacing_min_mm``..``disc_spacing_max_mm``).
   No band or flank may reach where the column leaves the image (the fill beyond the field of view reads as the
   darkest of discs). A body beyond the last disc found that the edge of the image cuts short is measured on
   the part in view (walls, centre, pedicles) and its endplate at the edge is not measured: the edge is no
   endplate.
3. **Naming.** The sacrum is recognised by its alae (bone joined to the body in front of its posterior wall
   reaching more than ``ala_min_halfwidth_mm`` from the midline on both sides, to the ilia, over at least
   ``ala_min_run_mm`` of the body's height, where a lumbar body is narrower and its transverse processes arise
   behind the body); the highest such segment in full view (not cut by the edge of the image) is S1 (or L5
   when ``transitional="sacralised_L5"``) and the levels are counted up from it (with an extra L6 when
   ``transitional="L6"``). Marks (``hints``), when given,
   name the bodies they lie in (a disagreement with the sacrum's count is noted); a CT without the sacrum (a
   crop of a few vertebrae) and without a mark gets "the levels cannot be named", never a guessed ladder.
4. **Landmarks per body.** Endplates where the body meets the discs on the body's AP middle, walls on the
   mid-height line, body centre between them; where the marrow is hardly denser than soft tissue (fatty or
   osteoporotic bone; the marrow level taken over the rows where the column is bone, not the pelvis below the
   sacrum), the cortex stands well above the noise and the voxels are fine enough to show it
   (``ct_cortex_max_voxel_mm``), the walls (and the spine curve's posterior wall) are the outer edges of the
   cortex instead of a fall through a threshold. **Pedicles** from the image
   (:func:`~planner.levels.pedicles.ct_pedicle`): the isthmus, the narrowest section of the bone bridge
   between body and arch cut perpendicular to the pedicle's axis (axis and isthmus found together: a plane
   across a tube cuts it smallest when perpendicular to it); sections are the bone above the threshold with
   gaps in the thin cortex closed and taken with their convex hull. The centre is the isthmus' centroid; its
   inner cortical outline, traced in that plane, is stored (``Level.pedicle_outline_left/right_lps``) where the
   cortex can be traced. S1's pedicles are sought in the frame of S1's posterior wall (the spine curve over the
   segment), not of its endplate, which leans forward with the sacral slope
   (:func:`~planner.levels.ct._sacral_wall_frame`). A pedicle whose section reaches the edge of the image, or
   that narrows to no isthmus, is not measured. The **canal** outline (``Level.canal_outline_lps``,
   :func:`~planner.levels.canal.ct_canal_outline`): rays from the canal's middle to the bone ring, in the
   plane near mid-height where the ring is most nearly closed.

**MRI** (:mod:`~planner.levels.mri`; two marks inside any two named bodies, or none):

1. **Bodies.** The learned body finder (:mod:`~planner.levels.mri_bodies`: the union of two small U-Nets on
   sagittal planes, ``resources/models/mri_bodies.onnx``, trained by ``scripts/train_mri_bodies.py``; no
   DICOM tag and no absolute intensity) outlines the vertebral bodies, Modic changes included, and splits
   them into a chain.
2. **Names.** From the marks (each names the body it lies in; marks in a disc or outside the bodies, or a
   count of bodies between them that does not fit their names, raise
   :class:`~planner.levels.results.MarkError` naming the likely correction) or, without marks, counted from
   the sacrum as a proposal to confirm ("cannot name the levels: ..." when the image does not show it).
3. **Landmarks per body**, measured in the acquired slices, never across two thick slices by rounding: the
   **midsagittal plane** is the plane of mirror symmetry of the vertebra; **walls** at the outer edge of their
   cortical lines, **endplates** at the centre of their dark lines (a straight line through them read at the
   AP middle), seeded by the body finder's outline and replacing its edges where the two agree within
   ``MrBodiesParams.refine_mm``; the **body centre** between them. **Pedicles**: in each parasagittal slice
   the pedicle is a bar of marrow between the superior and inferior notches; its height is the centre of the
   bar's edges, its sideways place at each depth the apex of the bar heights over neighbouring slices, its
   depth (the isthmus) midway between the posterior wall line and the bar's junction with the arch; both
   sides are averaged as mirror images about the midsagittal plane. An axial series of the same frame of
   reference (``companions``) measures the sideways place in-plane where a slice passes through the pedicle
   above its transverse process.

A landmark that cannot be measured on the image is absent (None): the command and the panel say
"not measured, place by hand"; nothing is filled in from a model of the average spine (on MRI, S1's
pedicles, which merge into the alae, are usually absent for that reason).

The main thresholds are documented fields of :class:`DetectionParams` (image-processing values, not
clinical ones; clinical numbers live in :mod:`planner.settings`); small sampling choices (step
sizes, search windows) are stated where they are used. Relabel helpers (:func:`shift_level_names`,
:func:`relabel_levels`) support the UI's "shift up/down" buttons.

Modules, one job each: :mod:`~planner.levels.api` (entry points), :mod:`~planner.levels.naming` (names
and the ladder), :mod:`~planner.levels.grid` (working grid, spine curve), :mod:`~planner.levels.discs` (the
CT disc score along the straightened column), :mod:`~planner.levels.ct` and
:mod:`~planner.levels.mri` (detection per modality; :mod:`~planner.levels.mri_bodies` the MRI body finder,
:mod:`~planner.levels.mri_input` its input planes), :mod:`~planner.levels.profiles` (MRI slice and
profile primitives), :mod:`~planner.levels.pedicles`, :mod:`~planner.levels.canal`,
:mod:`~planner.levels.params` (the technical parameters) and :mod:`~planner.levels.results`.
"""

from planner.levels.api import labelling_volume, propose_levels, propose_levels_detailed
from planner.levels.naming import (
    PROPOSED_ORDER,
    SHIFT_ORDER,
    TRANSITIONAL,
    merge_proposal,
    names_from_anchor,
    relabel_levels,
    shift_level_names,
)
from planner.levels.params import DetectionParams
from planner.levels.results import (
    LevelDetectionError,
    LevelProposal,
    MarkError,
    VertebraFound,
    landmark_label,
    not_measured,
)

__all__ = [
    "DetectionParams",
    "LevelDetectionError",
    "LevelProposal",
    "MarkError",
    "PROPOSED_ORDER",
    "SHIFT_ORDER",
    "TRANSITIONAL",
    "VertebraFound",
    "labelling_volume",
    "landmark_label",
    "merge_proposal",
    "names_from_anchor",
    "not_measured",
    "propose_levels",
    "propose_levels_detailed",
    "relabel_levels",
    "shift_level_names",
]
