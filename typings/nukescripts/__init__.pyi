# Minimal stubs for Nuke's nukescripts package (types-nuke has none): only what copycat_nuke.nuke uses.
from . import panels as panels
