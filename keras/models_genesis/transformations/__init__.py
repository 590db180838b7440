"""The four transformations of Models Genesis (paper Sec. 2.1) and their composition."""

from models_genesis.transformations.flip import apply_flip, flip, sample_flip_params  # noqa: F401
from models_genesis.transformations.inner_cutout import (  # noqa: F401
    apply_inner_cutout, inner_cutout, sample_inner_cutout_params,
)
from models_genesis.transformations.local_shuffling import (  # noqa: F401
    apply_local_shuffling, local_pixel_shuffling, sample_local_shuffling_params,
)
from models_genesis.transformations.nonlinear import (  # noqa: F401
    apply_nonlinear, nonlinear_transformation, sample_nonlinear_params,
)
from models_genesis.transformations.outer_cutout import (  # noqa: F401
    apply_outer_cutout, outer_cutout, sample_outer_cutout_params,
)
from models_genesis.transformations.unified import (  # noqa: F401
    COMBINATIONS, SCHEMES, TRANSFORMATIONS, TransformConfig, apply_combination, combination_name,
    genesis_transform,
)
