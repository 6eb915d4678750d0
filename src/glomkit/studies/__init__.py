"""Study runners over the metrics of ``glomkit.eval``: the label-fraction study."""
