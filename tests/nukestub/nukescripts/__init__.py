"""A stand-in for Nuke's ``nukescripts`` package: just ``panels``, as copycat_nuke.nuke uses it."""

from nukescripts import panels as panels
