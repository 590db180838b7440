"""The proxy task's data: cubes cut from scans (paper Sec. 3.1), axial slices and radiograph crops
for the 2D models, and the `PyDataset`s that serve (transformed, original) pairs."""
