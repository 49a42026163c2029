"""hulytrio: the Huly Virtual Network on Trio."""
