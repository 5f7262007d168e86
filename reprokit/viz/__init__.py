"""Tables and figures of the paper rebuilt from run directories, each with a provenance sidecar; the list of
artefacts is :data:`reprokit.viz.registry.ARTEFACTS`. Submodules are imported where used: plotting and the
network-backed figures pull in matplotlib and torch."""
