"""pyqtgraph views: training curves and attention maps."""
