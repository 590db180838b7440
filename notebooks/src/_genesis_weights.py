# %% [markdown]
# **Genesis weights of our own.** The released `Genesis_Chest_CT.h5` cannot be redistributed
# (`pretrained_weights/README.md` says where to get it), so the notebooks pre-train a *small*
# Models Genesis on the embedded chest-CT phantoms: `run_demo_pretraining` (the `--preset demo`
# of `models-genesis pretrain`: 8 base filters, 32x32x16 cubes). All notebooks share one run in
# `WORK/pretrain/`: the first notebook trains it, the others reuse it.

# %%
from models_genesis.data.phantoms.chest import make_chest_phantoms
from models_genesis.pipeline.pretrain_demo import run_demo_pretraining

# LUNA16 layout: subset0..9/*.mhd (+ .raw), annotations.csv, candidates.csv, masks/
CHEST_DIR = WORK / "chest_phantoms"


def demo_pretraining():
    """Make the chest phantoms and pre-train the demo Models Genesis once; return its summary."""
    if not (CHEST_DIR / "phantoms.json").is_file():
        make_chest_phantoms(CHEST_DIR, n=10 if SMALL else 20, seed=0,
                            shape=(128, 128, 64) if SMALL else (192, 192, 96))
    short = dict(epochs=1, steps_per_epoch=3, validation_steps=1) if SMALL else {}
    return run_demo_pretraining(WORK / "pretrain", phantom_dir=CHEST_DIR, workers=0,
                                tensorboard=False, **short)
