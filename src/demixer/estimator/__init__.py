"""The quality estimator: each stem's SDR predicted without a reference, per second and over the track, and the
chance its source is absent (:mod:`.features` what it sees, :mod:`.model` the network, :mod:`.predict` the shipped
weights on a separation, :mod:`.training` how they were made). ``--report`` adds its output to every stem."""
