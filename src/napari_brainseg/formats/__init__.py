"""Readers and writers of one file format each (used through :mod:`napari_brainseg.io`)."""
