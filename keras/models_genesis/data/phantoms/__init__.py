"""Synthetic phantom data sets, written in the layouts of the real ones.

- `chest`: LUNA16-style chest CT (`subset{K}/*.mhd`, `annotations.csv`, `candidates.csv`,
  nodule masks): the default data for pre-training and for the NCC/NCS target tasks.
- `shapes`: the shared drawing primitives (ellipsoids, tubes and vessel trees, noise, atomic CSV
  writing); volumes are written with `models_genesis.data.io.volumes.write_volume` (atomic).
"""
