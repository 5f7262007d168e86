"""Interactive pseudo-label inspector (ipywidgets); see :class:`PseudoLabelInspector`."""
from reprokit.inspect.widget import PseudoLabelInspector

__all__ = ["PseudoLabelInspector"]
