"""napari-brainseg: brain MRI skull stripping and tumour segmentation.

Importing the package loads no napari, Qt or torch (see shared/STYLE.md).
"""

__version__ = "0.1.0"
