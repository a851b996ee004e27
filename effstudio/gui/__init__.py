"""The desktop window: the only package that imports PySide6, pyqtgraph or superqt.

Entry points: :func:`effstudio.gui.app.run_app` (the window),
:func:`effstudio.gui.screenshot.save_screenshot` (an offscreen demo PNG) and
:func:`effstudio.gui.responsiveness.measure_responsiveness` (event-loop lateness
while a model trains).
"""
