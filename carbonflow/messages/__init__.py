"""Every contract between parts of carbonflow that run or ship apart, as typed, versioned models:
the grid document (:mod:`.grid`), the device map (:mod:`.device_map`), the collector configuration
(:mod:`.collector_config`), collector <-> center batches, commands and images (C4: :mod:`.c4`,
:mod:`.images`) and the center <-> center cascade exchange (C5: :mod:`.c5`).  Pure data, validation and
signing; producers and consumers import them from here, so neither imports the other, and this package
imports nothing of carbonflow outside itself."""
