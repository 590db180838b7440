"""The release's 3D U-Net, target heads, weight files and pretrained-weight presets."""
