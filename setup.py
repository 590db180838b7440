"""Install Models Genesis for Keras 3: `models_genesis` (from keras/) and `pytorch_compat`."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="models-genesis",
    version="0.1.0",
    description="Models Genesis (Zhou et al., MedIA 2021): self-supervised 3D pre-training "
    "by image restoration, in Keras 3.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    package_dir={"": "keras", "pytorch_compat": "pytorch_compat"},
    packages=find_packages("keras") + ["pytorch_compat"],
    install_requires=_requirements(),
    extras_require={
        # torch is optional: only pytorch_compat needs it. The Makefile pins 2.13.0 (CPU build).
        "torch": ["torch>=2.1"],
        # keras-hub is optional: only the ImageNet encoder of the 2D baselines needs it.
        "2d": ["keras-hub>=0.20"],
        # Jupyter for the notebooks (`make notebooks`): the project's .venv as the kernel;
        # ipywidgets draws tqdm's progress bars there (without it: "IProgress not found").
        "notebooks": ["jupyterlab>=4", "ipykernel>=6", "ipywidgets>=8"],
        # nnU-Net v2 for benchmarks/prepare.py's comparison only (it needs torch: the "torch"
        # extra; with the pinned CPU torch, install it without letting pip replace torch).
        "benchmark": ["nnunetv2>=2.5"],
        "dev": [
            "pytest>=7",
            # `make test` runs the suite on every core (one worker per test file).
            "pytest-xdist>=3.5",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6",
            "tf_keras>=2.16",
            "jax>=0.4.30",
        ],
    },
    entry_points={"console_scripts": ["models-genesis=models_genesis.cli:main"]},
)
