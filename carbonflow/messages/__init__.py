"""Message contracts between the parts of carbonflow that run apart: collector <-> center (C4) and
center <-> center (C5).  Pure data and signing; both ends import these, so neither imports the other."""
