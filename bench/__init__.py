"""`make bench`: how fast the saga runs here, and how that compares with the machine."""
