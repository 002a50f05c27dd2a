"""Technical parameters of the image safety model (image processing, not clinical numbers).

Clinical limits (canal margin, pedicle clearance, breach grades) are settings in
:mod:`planner.settings`; the values here only say how bone, canal and other bones are found on the
images. They are physical quantities (Hounsfield units on CT, millimetres) or ratios of intensities
measured on the image itself (MRI), so they hold for any scan of the population, not for one file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SafetyParams:
    # ---------------------------------------------------------------- working grid
    #: The working grid's voxel size is the input's median voxel size clipped to this range (mm).
    grid_spacing_mm: tuple[float, float] = (1.25, 1.5)
    #: Gaussian smoothing before thresholds (sigma, mm): noise of thin-slice CT, not anatomy.
    smooth_mm: float = 0.75
    #: The region modelled around a level: half-width to each side of the body centre (mm), ...
    region_lateral_mm: float = 95.0
    #: ... in front of the anterior wall and behind the posterior wall (mm), ...
    region_front_mm: float = 15.0
    region_back_mm: float = 110.0
    #: ... and above and below the body centre (mm).
    region_height_mm: float = 45.0
    #: Boxes are rounded out to this lattice so that small path changes reuse the model (mm).
    region_lattice_mm: float = 16.0
    #: The checks of a path model the level's region and the path from the skin to the tip, with this
    #: margin around the path (mm): the instrument's radius and the sampling around its surface.
    path_box_margin_mm: float = 10.0

    #: A level is not measured on the image when its landmarks' height (superior to inferior endplate) is below
    #: the first share of the median of its neighbours' in the plan, or above the second share of its taller
    #: neighbour's that is not itself short (planner.levels.results.odd_heights; the sacrum is not compared:
    #: its inferior landmark is the fused S1-S2 junction): the landmarks bound its bone and body on the image, and
    #: a segment cut wrongly takes in a disc or the next vertebra. example_ct bent by 10 degrees: L5's landmarks
    #: spanned 52 mm (L4's 27 mm) and a suggested L5 path passed every image check with its target in the L5-S1
    #: disc. The same shares as the level finder's ct_body_height_ratio.
    level_height_ratio: tuple[float, float] = (0.6, 1.5)
    #: ... and when the axis from its inferior to its superior endplate landmark lies more than this (degrees) from
    #: the line through the body centres of the plan's levels above and below it. Measured (scratch angles.py,
    #: levels from the level finder): the 21 MRIs with marks at L1 and L5, 0-14 degrees at T12-S1; example_ct
    #: 1-10; its turned, tilted and bent poses up to 47 (S1, tilted 10 degrees) where the levels are right, and
    #: 99-155 where a segment was cut wrongly (tilted -5: T12 and S1; bent +10: S1, its axis reversed).
    level_axis_max_deg: float = 60.0

    # ---------------------------------------------------------------- CT bone
    #: CT: dense bone (cortex, endplates, pedicles and posterior elements), Hounsfield units. Thin
    #: cortex seen through 3 mm voxels keeps about half its contrast, so the limit lies between soft
    #: tissue (< 80 HU) and the partial-volume cortex (> 250 HU).
    ct_dense_hu: float = 180.0
    #: CT: a voxel enclosed by dense bone in both the sagittal and the coronal plane (a body's inside) is
    #: cancellous bone when at least this dense (HU). Fatty, osteoporotic marrow can be fainter (the TPTBox
    #: crop: median 51 HU, a quarter below 0): the body's outline (SpineModel.body_mask) is then filled
    #: inside its cortex, while soft tissue enclosed by bone near a foramen (at 3 mm, partial-volume values
    #: of 50-90 HU) is not taken for bone.
    ct_cancellous_hu: float = 50.0
    #: CT: an enclosed voxel this dense is bone even when only one plane encloses it (HU): above CSF, fat
    #: and muscle, below the partial-volume cortex.
    ct_cancellous_sure_hu: float = 100.0
    #: Enclosure: rays of this length (mm) in the 8 directions of a plane; a voxel is enclosed in that
    #: plane when this many rays meet dense bone (a faint cortex may leave one gap).
    enclosure_ray_mm: float = 30.0
    enclosure_min_rays: int = 7
    #: Holes in the cancellous bone smaller than this (mm^3) are filled (noise, vessels), ...
    bone_hole_max_mm3: float = 200.0
    #: ... and so are holes in a sagittal or coronal slice up to this area (mm^2) that are not soft
    #: tissue (a foramen, 100-150 mm^2, is fat: below ct_cancellous_hu).
    bone_hole_max_mm2: float = 300.0

    #: The outline of a vertebral body bridges gaps in its cortex up to twice this wide (mm).
    body_closing_mm: float = 3.0
    #: CT body outline (SpineModel._ct_grown_body): the inside of the body is also what a fainter shell
    #: than ct_dense_hu encloses (HU), above muscle and disc (< 100 HU) and below the faint
    #: partial-volume cortex of a low-dose 3 mm CT (example_ct's anterior walls: 170-210 HU, so the
    #: marrow behind them was not bone and the outline of L3 ended 12 mm short of its wall). Measured
    #: against the body labels (share of the label inside the outline, bench/safety_bench.py --ct-bodies),
    #: example_ct L1-S1 / T12 (at the image's top edge): 180 HU (the outline before) 0.54-0.94 / 0.29;
    #: 150 HU 0.77-0.96 / 0.34; 130 HU 0.84-0.97 / 0.50; 110 HU 0.89-0.98 / 0.74, where the share of the
    #: outline on no label grows 4-8 points over 180 HU (2-6 at 130) and the limit nears marrow and disc
    #: (70-120 HU). The TPTBox crop's L3 (1.5 mm) 0.97 with each. None of them reaches another vertebra.
    ct_body_shell_hu: float = 130.0
    #: ... searched this far around the body's bone (mm) and at most this far in front of the landmarks'
    #: anterior wall (mm).
    body_grow_mm: float = 15.0
    body_front_margin_mm: float = 5.0

    # ---------------------------------------------------------------- MRI bone
    #: MRI: marrow is within this band of the level's marrow intensity (ratio to the median in the middle
    #: of the body); dark cortex, muscle (< 0.6) and bright fat and fluid (> 1.6) lie outside in T1, T2,
    #: STIR and water images.
    mr_marrow_band: tuple[float, float] = (0.65, 1.6)
    #: MRI: marrow thinner than twice this (mm) does not connect bone (partial-volume webs) ...
    mr_open_mm: float = 1.5
    #: ... and marrow farther than this from a body centre's seed along the marrow is not a vertebra's (mm):
    #: a pedicle's entry lies about 45 mm from the body centre.
    mr_max_reach_mm: float = 70.0
    #: MRI: holes in the marrow are filled when at least this fraction of the band's lower end (a Modic
    #: zone, a vein; not the dark cortex around the bone).
    mr_hole_fraction: float = 0.5
    #: MRI: the canal's fluid is at least this many times the marrow intensity (T2, STIR, water images) ...
    mr_fluid_ratio: float = 1.6
    #: ... and fills at least this share of the canal search region; otherwise the canal is not measured.
    mr_fluid_min_share: float = 0.04

    # ---------------------------------------------------------------- canal (CT and MRI)
    #: The canal is searched this far to each side of the level's mid-sagittal plane (mm) ...
    canal_search_lateral_mm: float = 30.0
    #: ... from this far in front of the posterior wall landmark to this far behind it (mm). The
    #: landmarks only place the search; the outline comes from the image.
    canal_search_front_mm: float = 2.0
    canal_search_back_mm: float = 40.0
    #: Canal pieces smaller than this are dropped (mm^3): crevices between processes, not the canal.
    canal_min_piece_mm3: float = 400.0
    #: Where the bony ring is open (discs, foramina) the canal is bridged along the spine between
    #: the pieces found above and below, up to this far (mm).
    canal_bridge_mm: float = 24.0

    # ---------------------------------------------------------------- owners of the bone
    #: Seeds: the middle of each level's body, an ellipsoid of this fraction of its depth and height
    #: around the body centre (or a ball of seed_radius_mm when the level's frame is incomplete).
    seed_body_fraction: float = 0.6
    seed_radius_mm: float = 5.0
    #: The bony ring around each piece of canal (bone within this distance of it (mm), in a slab this
    #: thick to each side of the piece's middle (mm)) seeds the level of that piece: pedicles and
    #: laminae then reach their own articular processes before a neighbour's do, even where the
    #: joint space is too thin for the voxels (3 mm CT).
    ring_seed_mm: float = 3.0
    ring_seed_slab_mm: float = 4.0
    #: A body centre farther than this from bone gives no seed (mm).
    seed_max_offset_mm: float = 8.0
    #: Vertebrae are separated where the bone has dark valleys up to this wide (joint spaces) (mm); a
    #: step through a valley this deep (HU, or intensity units on MRI) costs twice its length.
    joint_width_mm: float = 3.0
    joint_valley_hu: float = 20.0
    #: Smoothing before the valleys are measured (sigma, mm): trabecular noise is not a joint.
    joint_smooth_mm: float = 1.0
    #: CT: where a joint is too thin for the voxels (a facet joint at 3 mm) the owners draw the boundary
    #: between two vertebrae half-way between their seeds, uncertain by about this many voxels of the
    #: source image (largest spacing). A path's first contact with the treated vertebra's bone behind its
    #: posterior wall counts only where the bone is the treated vertebra's by more than that (a geodesic
    #: margin of twice the uncertainty, SpineModel.owner_margin_mm); bone before it may be the
    #: neighbour's articular process or the joint between them. Measured on example_ct (3 mm): the owners
    #: gave L4's inferior articular process to L5 about 3.7 mm (1.2 voxels) past its labelled edge.
    owner_uncertain_voxels: float = 1.5
    #: Bone farther than this from the spine's mid-sagittal plane seeds "another bone" (ilium, rib) (mm).
    lateral_bone_mm: float = 65.0

    # ---------------------------------------------------------------- paths
    #: Sampling step along the instrument's axis (mm); the issue asks for 0.5 mm or finer.
    path_step_mm: float = 0.5
    #: Points on the instrument's surface around each axis sample.
    surface_points: int = 8
    #: A bone gap, another bone or a canal contact shorter than this is sampling noise (mm).
    min_run_mm: float = 1.0
    #: How far the introducer line is followed back when the skin is not found (mm).
    approach_mm: float = 120.0
    #: CT joints along a path: a sample darker than joint_max_hu (HU) and joint_depth_hu darker than the
    #: densest sample within joint_flank_mm on both sides, each at least joint_flank_hu (two cortices).
    joint_max_hu: float = 250.0
    joint_depth_hu: float = 100.0
    joint_flank_hu: float = 200.0
    joint_flank_mm: float = 4.0
    #: ... it is a joint (another bone before it) when this far behind the posterior wall (mm), else a gap.
    joint_min_depth_mm: float = 3.0
    #: Pedicle clearance: rays in the instrument's cross-section, this long (mm), this fine (mm).
    clearance_ray_mm: float = 15.0
    clearance_ray_step_mm: float = 0.25
    #: CT: the pedicle's edge is refined half-way between the cortex and the soft tissue within this
    #: distance of the bone mask's edge (mm).
    edge_window_mm: float = 3.0
    #: Pedicle clearance is measured from this far past the first bone contact (the entry's slope) (mm).
    clearance_skip_mm: float = 3.0
    #: Zone surface: number of points on the sphere.
    zone_points: int = 162


SAFETY_PARAMS = SafetyParams()
