"""Registry of the phantom generators by kind, for `models-genesis make-phantoms --kind KIND`.

Each generator is called as `make(out_dir, n=N, seed=S)` and returns a summary dict:
- `chest`: LUNA16-like chest CT (pre-training, NCC, NCS) -- `phantoms.chest`;
- `abdomen`: LiTS-like abdominal CT with liver/tumour labels (LCS) -- `phantoms.abdomen`;
- `brain`: BraTS-like FLAIR MRI with tumour labels (BMS) -- `phantoms.brain`;
- `pe`: CTPA-like scans with embolism candidates (ECC) -- `phantoms.pe`;
- `xray`: ChestX-ray14-like radiographs (DRRs of the chest phantoms, Genesis X-ray) -- `phantoms.xray`.
"""

from __future__ import annotations

from models_genesis.data.phantoms.abdomen import make_abdomen_phantoms
from models_genesis.data.phantoms.brain import make_brain_phantoms
from models_genesis.data.phantoms.chest import make_chest_phantoms
from models_genesis.data.phantoms.pe import make_pe_phantoms
from models_genesis.data.phantoms.xray import make_xray_phantoms

TARGET_PHANTOMS = {"chest": make_chest_phantoms, "abdomen": make_abdomen_phantoms,
                   "brain": make_brain_phantoms, "pe": make_pe_phantoms,
                   "xray": make_xray_phantoms}


def get_phantom_maker(kind: str):
    """Return the generator registered for `kind`; raise `ValueError` listing the kinds."""
    if kind not in TARGET_PHANTOMS:
        raise ValueError(f"Unknown phantom kind. Valid kinds: {sorted(TARGET_PHANTOMS)}. "
                         f"Received: kind={kind!r}.")
    return TARGET_PHANTOMS[kind]
