"""Technical parameters of the level finder: one documented, frozen object (image-processing values,
not clinical ones; clinical numbers live in :mod:`planner.settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class MrBodiesParams:
    """Settings of the learned MRI body finder (:mod:`planner.levels.mri_bodies`; technical, not clinical)."""

    #: The ONNX model; None: :data:`planner.levels.mri_bodies.MODEL_PATH` (the shipped
    #: ``resources/models/mri_bodies.onnx``).
    model_path: Optional[str] = None
    #: Largest distance between the sagittal planes given to the network (mm).
    plane_step_mm: float = 2.5
    #: Distance between planes of the first pass that finds the midline when there are no marks (mm).
    coarse_step_mm: float = 5.0
    #: Planes cover this far either side of the marks' (or the found) midline (mm).
    half_width_mm: float = 30.0
    #: A body is cut by the side of the image when its outline reaches the outermost plane there, or when its
    #: section in the plane next to it is still at least this share of its largest section: a body's sagittal
    #: section shrinks to nothing over its last few millimetres (its side is rounded), so a body still this
    #: large one plane from the image's edge goes on past it and the network's outline stopped at the edge's
    #: partial volume (VB1_02's L4, whose label runs to the last slice: 0.80 of its largest section in the
    #: next-to-last plane and none in the last, with the model trained with the demo phantom).
    side_share: float = 0.5
    #: A body is also cut by the side of the image when its outline comes within this distance (mm; in its plane,
    #: or in the next plane across when the planes lie closer than this) of where the image ends inside a plane:
    #: the slanted sides of an oblique sagittal stack cross the planes, so the outermost plane does not show the
    #: cut. Held-out, on the scans resampled onto a sagittal grid turned 10 degrees about the long axis with 4 mm
    #: slices (``bench/safety_bench.py --mri --mri-cv DIR --mri-pose oblique-turn10``), the narrow scans' L4 and
    #: L5 got targets 6-10 mm to the side of the label's middle; with this rule VB1_15's are "cannot suggest".
    #: VB1_02's and VB1_03's L5 stay wrong: there the body runs into the part of the turned grid that the
    #: 1 mm scan does not cover, which the resampling fills with zeros inside the grid (a scanner's own oblique
    #: stack has data up to its sides).
    edge_reach_mm: float = 4.0
    #: Around the marks, the planes reach this far above the upper and below the lower mark (mm).
    reach_mm: float = 130.0
    #: ... and this far in front of and behind them (mm).
    front_mm: float = 80.0
    back_mm: float = 110.0
    #: Probability above which a pixel belongs to a body (the bodies are found and told apart at it).
    threshold: float = 0.5
    #: Where a body's probability, going down its axis, takes more than ``inferior_fade_mm`` to fall from this
    #: higher level to ``threshold``, the inferior endplate is read at this level (and a note says so): a
    #: degenerated disc can join the body above it at a moderate probability. Held-out, read at ``threshold``
    #: L5's inferior endplate lay 11-18 mm low, in the L5-S1 disc, on 6 of 21 scans; those 6 are exactly the
    #: bodies (of 105 held-out L1-L5) whose fade exceeds 4 mm; read at this level five are 2-5 mm off and one
    #: (VB1_02, a concave endplate) 12 mm. Where
    #: the fall is sharp (every other body, and the demo's Modic-changed endplates) nothing changes: a Modic band
    #: at the endplate also lowers the probability, so the higher level is not used everywhere.
    inferior_edge_threshold: float = 0.8
    inferior_fade_mm: float = 4.0
    #: The bodies are told apart in the mask's core: probability above this, eroded in each plane by
    #: ``seed_erosion_px`` pixels (a disc's blurred rim can join two bodies at the mask's threshold).
    seed_threshold: float = 0.8
    seed_erosion_px: int = 1
    #: Sections of neighbouring planes that overlap by at least this (intersection over union) and are each
    #: other's best overlap belong to one body.
    link_iou: float = 0.3
    #: A section of a plane is split when it holds two sections of the neighbouring plane each of at least this share
    #: of its area (a disc bridged in the lateral planes, or by Modic bands with the disc's own signal beside it).
    split_share: float = 0.2
    #: ... and when their centres lie at least this far apart (mm): neighbouring lumbar bodies' centres lie 30-40 mm
    #: apart, while the two pieces of one body whose core a band along an endplate cuts lie at most about half a
    #: body's height (under 18 mm) apart.
    split_min_step_mm: float = 22.0
    #: Smallest part counted as a body (ml); a lumbar body holds 30-50 ml, a partly imaged one less.
    min_body_ml: float = 2.0
    #: A part between two bodies of the column holding less than this share of the column's median volume is a
    #: fragment (of a disc, or of a Modic band outlined apart), not a body, when its neighbours make a vertebral step
    #: without it: it is dropped (a body is never that small inside the column; a collapsed one keeps its width).
    min_inner_share: float = 0.25
    #: Neighbouring body centres lie this far apart (mm); a longer step means a body was missed.
    step_mm: tuple[float, float] = (16.0, 52.0)
    #: The column of bodies bends by at most this much from one step (centre to centre) to the next (deg).
    max_bend_deg: float = 40.0
    #: The top of the sacrum (S1), which the model outlines less surely, is outlined at this body probability.
    sacrum_threshold: float = 0.25
    #: Without marks, a count from the sacrum is flagged for checking when the image ends less than this far
    #: (mm) below the body taken for S1: the sacrum below it is hardly in view, and L5 above an image that ends
    #: in the L5-S1 disc can look like S1 (held-out, such cuts of the 21 scans were named one level high on 6;
    #: ``bench/anatomy_bench.py --fov --mri-cv``).
    sacrum_view_mm: float = 20.0
    #: Without marks, the count from the sacrum needs at least this many bodies in view above the body it
    #: names S1: with fewer the image shows too little of the spine to tell the sacrum from a lumbar body (an
    #: axial upper-abdominal MR of the shared data, 60 mm tall across the thoraco-lumbar junction, was named
    #: L5 and S1). Every scan of the labelled set, and each of its cut fields of view, shows at least four.
    count_min_above_s1: int = 3
    #: Mean L5 / S1 probability inside a body above which the network names it ...
    name_confidence: float = 0.5
    #: ... and above which a body looks like the last lumbar body (a second such body makes the names doubtful).
    name_doubt: float = 0.25
    #: Of two neighbouring bodies that both look like the last lumbar body, the upper one is taken (the top of the
    #: sacrum can look like L5) unless its L5 probability is below this share of the lower one's: then no names are
    #: given. Held-out, every such pair where the upper one was L5 had a share of 0.71 or more (VB3_02, VB3_04,
    #: VB3_05, VB3_12, VB2_05, with and without Modic-like bands); where Modic-like bands along the L4-L5 disc made
    #: L4 look like L5 it was 0.31-0.38 (VB2_07; ``bench/anatomy_bench.py --modic``). The share does not separate
    #: the two cleanly: the shipped model gives 0.37 on its own training scan VB3_02, whose upper one is L5, and
    #: that scan is now refused rather than named; where the share is that low the network cannot tell them apart.
    two_l5_min_ratio: float = 0.5
    #: Without marks, a body taken for the last lumbar body with more than this many times the median volume of the
    #: bodies found names nothing: it holds two bodies joined (held-out, such bodies held 1.0-1.4 times the median,
    #: 1.66 with fat-bright bands over half of L4 and L5; L5 and the top of the sacrum joined held 1.94).
    anchor_max_volume_ratio: float = 1.75
    #: A wall or endplate measured on its cortical line in the acquired slices replaces the network's edge
    #: when it lies within this distance of it (mm); 0: never. On thick, blurred slices (the demo's 3.5 mm) the
    #: network's edge lies 1.5-3 mm inside the cortex and the measured one within 0.5 mm of it; on the 1 mm real
    #: scans the measurement replaces few edges (26 of 585 held-out values changed, medians within 0.1 mm).
    refine_mm: float = 3.0
    #: A lumbar body whose height (superior to inferior endplate centre) is less than this share of its
    #: neighbours' median height gets a warning to check its endplates: the outline may stop at a marrow
    #: change (a Modic band as dark as the disc) or the body is collapsed (a fracture). Normal lumbar bodies
    #: differ from their neighbours by well under a quarter (on the 21 labelled real scans none is flagged:
    #: tests/test_levels_mri_real.py).
    short_body_ratio: float = 0.75
    #: A lumbar body whose outline is taller than this many times the taller of its lumbar neighbours gets a
    #: warning, and no MRI target is suggested in it: the outline may run on through a disc or a band into the
    #: next bone (held-out with the fold models before stop 26, L5's outline ran into the top of the sacrum on
    #: VB1_02, VB3_08 and VB3_11 at 1.24-1.34 times L4's height, and every other L5 measured at most 1.16 times
    #: L4; the stop 26 model flags VB2_05's L1 on its own training scan, outlined 3.6 mm taller than its label).
    #: Neighbouring normal lumbar bodies differ in height by a few per cent; a taller body is a join to check.
    tall_body_ratio: float = 1.2
    #: A body's axis is the principal axis of its section unless that turns more than this from the spine's
    #: direction between its neighbours (degrees); then the spine's direction. Neighbouring lumbar bodies'
    #: axes differ by a few degrees (lordosis spreads about 40-60 degrees over five levels).
    axis_tolerance_deg: float = 15.0
    #: onnxruntime threads.
    threads: int = 1


@dataclass(frozen=True)
class DetectionParams:
    """Image-processing thresholds of the level finder (technical, not clinical)."""

    #: Spacing of the LPS-aligned working grid (mm).
    work_spacing_mm: float = 1.5
    #: Most voxels of a working grid (float32: 4 bytes each); a larger region is resampled more coarsely,
    #: so the memory used does not grow with the input's size.
    max_work_voxels: int = 24_000_000
    #: Most voxels of the float32 copy of the input taken for measuring in the acquired slices (MRI); a
    #: larger region is subsampled in-plane (every n-th pixel), never across slices first.
    max_native_voxels: int = 24_000_000
    #: Longest spine curve followed (mm): a curve that runs longer has left the spine (an error, not an
    #: allocation that grows with the curve).
    max_curve_mm: float = 1500.0
    #: CT: Hounsfield value above which a voxel counts as bone (cortex and dense trabecular bone).
    ct_bone_hu: float = 200.0
    #: CT: Hounsfield value separating the patient from the air around it.
    ct_body_hu: float = -300.0
    #: CT: a cortical line stands at least this far above the body's threshold (between marrow and soft
    #: tissue); used for a wall where the marrow is hardly denser than soft tissue (fatty, osteoporotic bone).
    ct_cortex_contrast_hu: float = 60.0
    #: CT: the largest voxel (mm) in which the cortex walls above are followed. The vertebral body's cortical
    #: shell is well under 1 mm thick; in 3 mm voxels it is averaged into the marrow, and on example_ct
    #: (3 mm) with its marrow made less dense (trabecular values scaled towards soft tissue, as in osteopenia)
    #: the cortex walls measured no body while the threshold walls kept every level within 3 mm.
    ct_cortex_max_voxel_mm: float = 2.0
    #: CT: a threshold walk out of the body that ends on marrow a little fainter than the threshold goes on to
    #: a cortical line at most this far beyond (mm), if nothing between falls to soft tissue. On example_ct
    #: (3 mm) L1's front third reads 83-98 HU against a threshold of 86 HU, then its cortex (157 HU) 6 mm
    #: further: the walk ended 7 mm short of the labelled anterior wall.
    ct_wall_bridge_mm: float = 8.0
    #: CT: the bridged stretch stays above the threshold less this share of the threshold's height over soft
    #: tissue (``ct_soft_hu``): marrow just under the threshold, not the fat, muscle or vessels around the body
    #: (L1's stretch above: 83 HU and more against a lowest allowed 74 HU).
    ct_wall_bridge_dip: float = 0.25
    #: CT: typical soft-tissue value used to split body from surrounding tissue (muscle ~ 40 HU).
    ct_soft_hu: float = 40.0
    #: Half-width of the mid-sagittal slab averaged for the sagittal analysis (mm).
    slab_half_width_mm: float = 4.5
    #: Distance from the body-column track to the canal centre behind it, used by the CT track (mm).
    canal_offset_mm: float = 21.0
    ct_wall_median_mm: float = 15.0
    #: CT: the posterior wall line of the column is smoothed along the spine with a Gaussian of this sigma (mm):
    #: smooth over a vertebra (the basivertebral notch at each body's mid-height must not bend it), while
    #: following the lordosis.
    ct_wall_smooth_mm: float = 4.0
    #: Depth of the body column sampled in front of the posterior wall for disc detection (mm).
    column_depth_mm: tuple[float, float] = (4.0, 32.0)
    #: Largest disc tilt relative to the posterior-wall normal that the disc detector tries (deg).
    disc_max_tilt_deg: float = 20.0
    #: CT: distances above and below a disc band at which the flanks (the endplates next to the disc) are
    #: compared with it (mm). (On MRI the discs between the bodies come from the body finder.)
    ct_disc_flanks_mm: tuple[float, ...] = (3.0, 4.5, 6.0)
    #: Allowed distance between neighbouring discs (one vertebra plus one disc) (mm).
    disc_spacing_min_mm: float = 24.0
    disc_spacing_max_mm: float = 55.0
    #: CT: a body measuring (superior to inferior endplate centre) less than the first or more than the second
    #: times its neighbours' median height was cut wrongly along the spine (a disc found inside a body halves
    #: it, a disc missed joins two): its landmarks are to be checked and its pedicles, which the search then
    #: finds in the wrong vertebra, are left to be placed by hand. Neighbouring lumbar bodies differ by well
    #: under a quarter (none of the 21 labelled MRIs' bodies differs so: MrBodiesParams.short_body_ratio), and
    #: S1 measures about 0.8 of L5 on example_ct. example_ct turned or tilted by 5-10 degrees
    #: (bench/anatomy_bench.py --pose) gave bodies of 0.35-0.55 and 1.8 times their neighbours, each with a
    #: pedicle landmark 20-36 mm off.
    ct_body_height_ratio: tuple[float, float] = (0.6, 1.5)
    #: CT: the two pedicles of a vertebra arise at the same height of its body; measured farther apart than
    #: this along the body's axis (mm), one of them lies in the neighbouring vertebra and both are left to be
    #: placed by hand. About a pedicle's own height (L5: 12.9 +- 1.9 mm, Cook & Baker 2021, domain.md 5.2): on
    #: the posed CTs of bench/anatomy_bench.py --pose, pairs that were both right differed by up to 9 mm, those
    #: with one a vertebra off by 14-31 mm.
    ct_pedicle_pair_height_mm: float = 12.0
    #: CT: a segment whose bone, connected to its body in front of the posterior wall, reaches this far from the
    #: midline on both sides is sacral (the alae, joined to the ilia across the sacroiliac joints) ...
    #: (bench/anatomy_bench.py --pose prints the CT poses; measured per plane across the middle 40 % of each
    #: segment on example_ct straight, thinner and thicker slices, with noise, turned, tilted and bent: L5's
    #: bone there reaches at most 42 mm, in one plane 74 mm; S1's, where its alae are joined, 74-98 mm. At 40 mm
    #: over half the planes, L5 came within 0.5 mm of passing for S1 - every name one level high.)
    ala_min_halfwidth_mm: float = 60.0
    #: CT: ... in planes covering at least this much of the segment's height (mm): S1 of example_ct resliced at
    #: 5 mm shows its alae joined in only a third of its planes (3 of 9); L5 never in more than one.
    ala_min_run_mm: float = 4.0
    #: MRI: pedicles are searched this far behind the posterior wall (mm).
    pedicle_depth_mm: tuple[float, float] = (3.0, 14.0)
    #: MRI: ... and this far from the midline (mm).
    pedicle_lateral_mm: tuple[float, float] = (5.0, 40.0)
    #: The pedicle's centre is sought first at this fraction of the body's own measured half-width from the
    #: midline (a search start on each side; the bone or marrow found in the image decides the position).
    pedicle_lateral_fraction: float = 0.7
    #: CT: spacing of the cuts and of the samples in each cut across the pedicle bridge (mm).
    ct_pedicle_step_mm: float = 0.5
    #: CT: the bridge is followed this far behind the posterior wall line at most (mm).
    ct_pedicle_max_depth_mm: float = 30.0
    #: CT: the cut reaches this far beyond the body's own half-width (the pedicle's outer wall may stand
    #: a little proud of the body; the transverse process reaches much further) (mm).
    ct_pedicle_lateral_margin_mm: float = 3.0
    #: CT: a section that comes this close to the midline has joined the lamina (mm).
    ct_pedicle_midline_mm: float = 3.0
    #: CT: the canal is sought this far behind the posterior wall, and its outline's rays are this long (mm).
    ct_canal_max_depth_mm: float = 35.0
    #: CT: the canal's outline is sought in planes this fraction of the body's height either side of mid-height.
    ct_canal_height_fraction: float = 0.25
    #: CT: number of rays of the canal outline.
    ct_canal_rays: int = 72
    #: CT: the pedicle axis is sought within these angles from straight back (deg): medio-lateral (positive:
    #: running laterally going back, i.e. the pedicles converge toward the front) ...
    ct_pedicle_axis_ml_deg: tuple[float, float] = (-10.0, 50.0)
    #: ... and cranio-caudal (positive: rising going back).
    ct_pedicle_axis_cc_deg: tuple[float, float] = (-30.0, 30.0)
    #: CT: finest step of the pedicle axis search (deg; the coarse steps are multiples of it).
    ct_pedicle_angle_step_deg: float = 2.5
    #: CT: half-size of each cut across the pedicle (mm): a section reaching its border has joined a larger
    #: mass (the body, the arch), not a pedicle's isthmus.
    ct_pedicle_window_mm: float = 20.0
    #: CT: the cuts along the pedicle axis reach this far either side of the current centre (mm).
    ct_pedicle_scan_mm: float = 10.0
    #: CT: gaps in a section's cortical ring up to twice this wide are closed before the ring is filled (the
    #: thin cortex is not resolved all round on thick slices) (a morphological closing of this radius, mm).
    ct_pedicle_close_mm: float = 1.5
    #: CT: the first cut's section must hold bone this close to the point it is sought at (mm).
    ct_pedicle_track_mm: float = 5.0
    #: CT: the isthmus is a waist: the section widens by this factor (or joins a larger mass) on both sides.
    ct_pedicle_widening: float = 1.25
    #: CT: sections within this fraction of the smallest area, next to it, make up the isthmus.
    ct_pedicle_waist_tolerance: float = 0.10
    #: CT: most alternations of axis search and waist search.
    ct_pedicle_max_iterations: int = 8
    #: CT: a vertebra's turn about the spine's axis is sought within this many degrees either way (its plane of
    #: mirror symmetry; example_ct's own lumbar vertebrae are turned up to 5 degrees) ...
    ct_turn_range_deg: float = 20.0
    #: CT: ... with the plane up to this far to either side of the posterior wall's midline point (mm) ...
    ct_turn_offset_mm: float = 6.0
    #: CT: ... and used when the section's correlation with its mirror image reaches this (lumbar vertebrae of
    #: example_ct, straight and turned: 0.80-0.90; the sacrum joined to the ilia: 0.43-0.85).
    ct_turn_min_symmetry: float = 0.75
    #: Largest sideways correction of the midline from the body's left and right edges (mm).
    max_midline_correction_mm: float = 5.0
    #: A body's left or right edge found this far or farther from its midline is not its own (the sacral
    #: alae continue S1 sideways, or the profile ran out): that side's half-width is not measured (mm).
    body_max_half_width_mm: float = 38.0
    #: MRI: largest sideways correction of the midline from the body's left and right edges (mm).
    mr_max_midline_correction_mm: float = 3.0
    #: MRI: the midsagittal plane from the vertebra's mirror symmetry is taken only within this distance
    #: of the first estimate (farther: another symmetric structure; the estimate stays) (mm).
    mr_mirror_midline_max_mm: float = 4.5
    #: MRI: pedicle distances from the midline differing by more than this are averaged (mm).
    mr_pedicle_asymmetry_mm: float = 2.0
    #: MRI: spacing of the working grid (mm).
    mr_work_spacing_mm: float = 1.0
    #: MRI: ratio band around 1 counted as normal marrow (where a body's marrow ends sideways).
    mr_marrow_tol: float = 0.3
    #: MRI: a wall or endplate is the first dip of the signal below this ratio to marrow (cortical line).
    mr_wall_dip: float = 0.6
    #: MRI: signal above this ratio to marrow belongs to a run of marrow-like signal (pedicle bars); the run
    #: ends at the cortical lines around it.
    mr_run_level: float = 0.72
    #: MRI: the posterior wall line (where the pedicles start) is sought this far either side of the midline,
    #: between the pedicles (mm).
    mr_wall_line_half_span_mm: float = 7.0
    #: MRI: depths behind the wall line where a pedicle is a free bar between the notches (mm).
    mr_pedicle_core_mm: tuple[float, float] = (2.0, 9.0)
    #: MRI: a pedicle bar taller than this times its height in the core has joined the body or the arch.
    mr_pedicle_bar_jump: float = 1.35
    #: MRI: axial slices used for a pedicle's sideways place lie in this band of its half-height above its
    #: centre (above the transverse process, below its top).
    mr_axial_pedicle_band: tuple[float, float] = (0.35, 0.8)
    #: MRI: an axial series' pedicle place replaces the sagittal one only within this distance of it (mm).
    mr_axial_pedicle_max_shift_mm: float = 3.0
    #: MRI: the two pedicles measured are made mirror images (averaged) when their distances from the midline,
    #: depths and heights agree within these (mm); else each keeps its own place.
    mr_pedicle_pair_tolerance_mm: tuple[float, float, float] = (4.0, 4.0, 3.0)
    #: MRI: the body finder's settings (the bodies on MRI come from it).
    mr_bodies: MrBodiesParams = field(default_factory=MrBodiesParams)
