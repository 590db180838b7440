# %% [markdown]
# # The four transformations of Models Genesis, and their 12 combinations
#
# Models Genesis learn by **restoring** transformed sub-volumes: the network sees
# `x_tilde = f(x)` and must output `x` (paper Sec. 2.1, Eqs. 1-2). What it learns depends on
# what `f` destroys. The paper uses four transformations, each teaching one perspective
# (Sec. 2.2):
#
# | transformation | what the model must restore | perspective it learns |
# |---|---|---|
# | non-linear intensity (Bezier curve) | the original intensities (Hounsfield units) | **appearance** of structures and organs |
# | local pixel shuffling | the voxel order inside many small windows | **texture** and local boundaries |
# | outer cutout (out-painting) | everything outside a few revealed boxes | **context**: global geometry and layout, by extrapolation |
# | inner cutout (in-painting) | a few boxes filled with noise | **context**: local continuity, by interpolation |
#
# Each transformation is applied with its own probability, and outer and inner cutout exclude
# each other, so a cube undergoes one of **12 combinations** (identity included, Sec. 2.1 and
# Fig. 1). A random flip is applied to the input *and* the target alike: it is augmentation,
# not something to undo. This notebook shows each one on a cube cut from a synthetic chest CT
# in Hounsfield units.

# %% include: _setup.py

# %% [markdown]
# ## A real-looking cube
#
# One synthetic chest CT (lungs with vessels and nodules, airways, ribs, spine, heart, liver,
# scanner noise) in Hounsfield units, cut into 64x64x32 cubes as the paper does for LUNA16
# (Sec. 3.1): clip to [-1000, 1000] HU, scale to [0, 1], keep cubes that are neither empty air
# nor full tissue. The phantom is a scaled-down chest (a field of view of about 150 mm instead
# of 350 mm), so a 64x64x32 cube holds more tissue than on a real scan: we relax the tissue
# filter from 15% to 50% and keep the cube with the most structure.
#
# > **Real data:** `read_volume("datasets/luna16/subset0/<seriesuid>.mhd")` gives the same
# > `Volume`, and `ExtractionConfig()` holds the release's settings (100-voxel in-plane border,
# > 30 slices in z, 32 cubes per scan).

# %%
from models_genesis.data.phantoms.chest import make_chest_phantom
from models_genesis.data.pretraining.cubes import ExtractionConfig, extract_cubes_from_volume

phantom = make_chest_phantom(np.random.default_rng([0, 0]),
                             shape=(128, 128, 64) if SMALL else (192, 192, 96))
extraction = ExtractionConfig(cube_shape=(64, 64, 32), scale=8, border_xy=8, border_z=8,
                              tissue_fraction=0.5)
cubes = extract_cubes_from_volume(phantom["hu"], rng=np.random.default_rng(1), config=extraction)
cube = cubes[np.argmax(cubes.std(axis=(1, 2, 3)))]
print(f"phantom {phantom['hu'].shape} HU in [{phantom['hu'].min()}, {phantom['hu'].max()}], "
      f"spacing {tuple(round(s, 2) for s in phantom['spacing'])} mm; {len(cubes)} cubes kept; "
      f"cube {cube.shape} in [{cube.min():.2f}, {cube.max():.2f}]")

# %%
def middle(c):
    """Middle axial slice, displayed with rows down the image."""
    return np.asarray(c)[:, :, c.shape[2] // 2].T


def grid(images, titles, name, *, ncols=6, size=1.7, suptitle=None):
    """Show a row-major grid of middle slices and save it."""
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(middle(image), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    show(fig, name)


grid([cube[:, :, k:k + 1] for k in (4, 12, 20, 28)], [f"slice {k}" for k in (4, 12, 20, 28)],
     "01_cube.png", ncols=4, suptitle="The original cube (64x64x32), four axial slices")

# %% [markdown]
# ## 1. Non-linear intensity transformation: appearance (Sec. 2.2, part 1)
#
# Every voxel value is mapped through a cubic Bezier curve
# `B(t) = (1-t)^3 P0 + 3(1-t)^2 t P1 + 3(1-t) t^2 P2 + t^3 P3` (Eq. 3) with `P0 = (0, 0)`,
# `P3 = (1, 1)` and random control points `P1, P2`. The map is **monotonic**, so structures stay
# perceivable, but their intensities change; half of the curves are decreasing (inverted). To
# restore the original, the model must know what tissue *looks like*: the absolute intensity
# values of CT (Hounsfield units) carry the identity of structures and organs.

# %%
from models_genesis.transformations.nonlinear import (
    apply_nonlinear, nonlinear_table, sample_nonlinear_params,
)

rng = np.random.default_rng(3)
params = [sample_nonlinear_params(rng, invert_prob=0.0) for _ in range(3)]
params += [sample_nonlinear_params(rng, invert_prob=1.0) for _ in range(3)]
fig, axes = plt.subplots(2, 6, figsize=(13, 4.6))
v = np.linspace(0, 1, 257)
for k, p in enumerate(params):
    table = nonlinear_table(p)
    axes[0, k].plot(v, np.interp(v, np.linspace(0, 1, len(table)), table), color="C3")
    axes[0, k].plot(*np.r_[[[0, 0]], p["points"], [[1, 1]]].T, "o--", color="grey", ms=3, lw=0.6)
    axes[0, k].set(xlim=(0, 1), ylim=(0, 1), title="inverted" if p["invert"] else "increasing")
    axes[0, k].set_aspect("equal")
    axes[1, k].imshow(middle(apply_nonlinear(cube, p)), cmap="gray", vmin=0, vmax=1)
    axes[1, k].axis("off")
fig.suptitle("Non-linear transformation: Bezier curves (control points in grey) and the mapped cube",
             fontsize=10)
show(fig, "01_nonlinear.png")

# %% [markdown]
# ## 2. Local pixel shuffling: texture (Sec. 2.2, part 2)
#
# Many small windows are drawn at random; the voxels inside each are permuted (Eq. 4:
# `W_tilde = P W P'`). Windows are smaller than the network's receptive field, so the global
# content survives while local texture and boundaries are destroyed; restoring them teaches
# *local* texture. Unlike de-noising or in-painting, no value is replaced by noise: the voxels
# are only moved, so the intensity distribution stays (almost exactly: overlapping windows copy
# a few values twice) the original's. The release draws 10,000 windows of up to dim/10 per axis
# (6x6x3 here); the paper's text says 1,000. The zoomed crop shows the effect.

# %%
from models_genesis.transformations.local_shuffling import local_pixel_shuffling

shuffled = {n: local_pixel_shuffling(cube, rng=np.random.default_rng(4), n_windows=n)
            for n in (1000, 10000)}
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
zoom = (slice(16, 48), slice(16, 48))
for ax, (title, image) in zip(axes, [("original", cube), ("1,000 windows", shuffled[1000]),
                                     ("10,000 windows (release)", shuffled[10000]),
                                     ("10,000 windows, zoom", shuffled[10000])]):
    ax.imshow(middle(image)[zoom] if "zoom" in title else middle(image), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
show(fig, "01_local_shuffling.png")
histogram_shift = float(np.mean(np.abs(np.sort(shuffled[10000].ravel()) - np.sort(cube.ravel()))))
changed_shuffling = float(np.mean(shuffled[10000] != cube))
print(f"voxels moved: {100 * changed_shuffling:.1f}%; mean shift of the sorted intensities: "
      f"{histogram_shift:.4f} (of a [0, 1] range)")

# %% [markdown]
# ## 3. Outer cutout (out-painting) and inner cutout (in-painting): context (Sec. 2.2, part 3)
#
# **Outer cutout** keeps the cube only inside a few overlapping boxes of various sizes and aspect
# ratios and fills the outside with noise: to restore it the model *extrapolates*, learning the
# global geometry and spatial layout of organs. **Inner cutout** fills up to five boxes with
# noise and keeps the surroundings: the model *interpolates*, learning local continuity. Both
# keep a 3-voxel margin. The paper limits the cut-out region to under 1/4 of the volume; with the
# release's box sizes (what we match, docs/release_reference.md, 'Transformations': outer boxes of
# side `dim - randint(3*dim//7, 4*dim//7)`, inner boxes of side dim/6..dim/3) the inner boxes stay
# well under 1/4, while the outer boxes reveal about a third of the cube and noise fills the rest,
# as measured below.

# %%
from models_genesis.transformations.inner_cutout import inner_cutout
from models_genesis.transformations.outer_cutout import outer_cutout

outer = [outer_cutout(cube, rng=np.random.default_rng(s)) for s in range(3)]
inner = [inner_cutout(cube, rng=np.random.default_rng(s)) for s in range(3)]
grid(outer + inner, ["outer cutout"] * 3 + ["inner cutout"] * 3, "01_cutouts.png",
     suptitle="Outer cutout (extrapolate the outside) and inner cutout (interpolate the boxes)")
changed_outer = float(np.mean([np.mean(o != cube) for o in outer]))
changed_inner = float(np.mean([np.mean(i != cube) for i in inner]))
print(f"share of voxels replaced by noise: outer cutout {100 * changed_outer:.0f}%, "
      f"inner cutout {100 * changed_inner:.0f}%")

# %% [markdown]
# ## 4. Flip: augmentation, not a transformation to undo
#
# Before the transformations, the cube is flipped along random axes (each further flip with
# probability 0.4, at most 3) — the input **and** the target alike, so the model never has to
# undo it.

# %%
from models_genesis.transformations.flip import flip

x_flipped, y_flipped = flip(cube, cube.copy(), rng=np.random.default_rng(2), prob=1.0)
print("input and target flipped alike:", np.array_equal(x_flipped, y_flipped),
      "| differs from the original:", not np.array_equal(x_flipped, cube))

# %% [markdown]
# ## 5. The 12 combinations
#
# Shuffling (on/off) x non-linear (on/off) x painting (none / inner / outer) = 12 transformed
# versions of a cube, the identity included (paper Fig. 1, step 2; Fig. D.13). Applied in the
# release's order: shuffling, then the intensity map, then painting.

# %%
from models_genesis.transformations.unified import COMBINATIONS, apply_combination, combination_name

combos = [apply_combination(cube, k, rng=np.random.default_rng(10)) for k in COMBINATIONS]
short = {"local_shuffling": "shuffle", "nonlinear": "nonlinear", "inner_cutout": "inner",
         "outer_cutout": "outer"}
titles = [" + ".join(short[t] for t in k) or "identity" for k in COMBINATIONS]
grid(combos, titles, "01_combinations.png", suptitle="The 12 combinations of transformations")
print(len(COMBINATIONS), "combinations:", [combination_name(k) for k in COMBINATIONS])

# %% [markdown]
# ## 6. The unified scheme: probabilities (Sec. 2.2, Sec. 3.1)
#
# During pre-training each pair is drawn by `genesis_transform`: flip (0.4 per further flip),
# local shuffling with probability 0.5, non-linear 0.9, painting 0.9, of which inner cutout 0.2
# and outer cutout 0.8. The model therefore also sees *untransformed* cubes (Sec. 3.1): it must
# tell original from transformed, and the inputs resemble the normal images of target tasks.
# A Monte-Carlo check of the drawn frequencies against these probabilities:

# %%
from models_genesis.transformations.unified import (
    TransformConfig, genesis_transform, sample_genesis_choices,
)

config = TransformConfig()
n_draws = 500 if SMALL else 4000
draw_rng = np.random.default_rng(0)
draws = [sample_genesis_choices(draw_rng, cube.shape, config) for _ in range(n_draws)]
expected = {"local_shuffling": config.local_prob, "nonlinear": config.nonlinear_prob,
            "inner_cutout": config.paint_prob * config.inpaint_rate,
            "outer_cutout": config.paint_prob * (1 - config.inpaint_rate)}
frequencies = {k: float(np.mean([d[k] for d in draws])) for k in expected}
identity_share = float(np.mean([not any(d[k] for d in [d] for k in expected) for d in draws]))
for k in expected:
    print(f"{k:16s} expected {expected[k]:.2f}  drawn {frequencies[k]:.3f}")
print(f"untransformed inputs: {100 * identity_share:.1f}% "
      f"(expected {100 * (1 - config.local_prob) * (1 - config.nonlinear_prob) * (1 - config.paint_prob):.1f}%)")

# %%
pairs = [genesis_transform(cube, rng=np.random.default_rng(s), return_applied=True) for s in range(6)]
titles = [" + ".join(short[k] for k in short if applied[k]) or "identity" for _, _, applied in pairs]
grid([p[0] for p in pairs] + [p[1] for p in pairs], titles + ["target (flipped original)"] * 6,
     "01_genesis_pairs.png", suptitle="Six training pairs: input (top) and target (bottom)")

# %%
save_summary("01_transformations", {
    "cube_shape": cube.shape, "n_combinations": len(COMBINATIONS), "n_draws": n_draws,
    "expected": expected, "frequencies": frequencies, "identity_share": identity_share,
    "shuffling_histogram_shift": histogram_shift, "changed_shuffling": changed_shuffling,
    "changed_outer": changed_outer, "changed_inner": changed_inner})
