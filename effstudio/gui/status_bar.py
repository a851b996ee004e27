"""Status bar: run state, device, live memory, and plugins that failed to load."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel, QMessageBox, QStatusBar, QToolButton, QWidget

from effstudio.engine.memory import rss_mb
from effstudio.gui import theme
from effstudio.gui.icons import action_icon
from effstudio.gui.theme import monospace_font
from effstudio.registry import PluginError

STATE_COLOURS = {
    "idle": theme.MUTED, "starting": theme.ACCENT, "running": theme.OK, "paused": theme.WARNING,
    "stopping": theme.WARNING, "finished": theme.OK, "stopped": theme.WARNING, "failed": theme.ERROR,
}


class StatusBar(QStatusBar):
    def __init__(self, devices: list[str], plugin_errors: list[PluginError], parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizeGripEnabled(True)
        self.plugin_errors = list(plugin_errors)
        self.plugins_button = QToolButton(self)
        self.plugins_button.setObjectName("pluginErrors")
        self.plugins_button.setIcon(action_icon("warning"))
        self.plugins_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.plugins_button.setAutoRaise(True)
        count = len(self.plugin_errors)
        self.plugins_button.setText(f"{count} plugin{'s' if count != 1 else ''} failed to load")
        self.plugins_button.setToolTip("Click for details")
        self.plugins_button.setStyleSheet(f"color: {theme.WARNING};")
        self.plugins_button.clicked.connect(self.show_plugin_errors)
        self.plugins_button.setVisible(bool(self.plugin_errors))

        self.state_label = QLabel(self)
        self.device_label = QLabel(self)
        self.device_label.setToolTip("Devices this machine offers; during a run, the device it uses")
        self.memory_label = QLabel(self)
        self.memory_label.setFont(monospace_font())
        self.memory_label.setToolTip("Resident memory of this process (and CUDA memory during a run)")
        self.addPermanentWidget(self.plugins_button)
        for widget in (self.state_label, self.device_label, self.memory_label):
            self.addPermanentWidget(widget)
        self.devices = devices
        self.set_device(None)
        self.set_state("idle")
        self.cuda_mb: float | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.update_memory)
        self.timer.start()
        self.update_memory()

    def set_state(self, state: str, detail: str = "") -> None:
        self.state = state
        colour = STATE_COLOURS.get(state, theme.TEXT)
        text = state.capitalize() + (f" \u00b7 {detail}" if detail else "")
        self.state_label.setText(f"<span style='color:{colour}'>\u25cf</span> {text}")

    def set_device(self, device: str | None) -> None:
        if device:
            self.device_label.setText(f"Device: {device}")
        else:
            self.device_label.setText(f"Devices: {', '.join(self.devices)}")

    def set_cuda_memory(self, megabytes: float | None) -> None:
        self.cuda_mb = megabytes
        self.update_memory()

    def update_memory(self) -> None:
        text = f"RSS {rss_mb():,.0f} MB"
        if self.cuda_mb is not None:
            text += f" \u00b7 CUDA {self.cuda_mb:,.0f} MB"
        self.memory_label.setText(text)

    def plugin_error_text(self) -> str:
        return "\n\n".join(f"{e.group}: {e.name} = {e.target}\n{e.message}" for e in self.plugin_errors)

    def show_plugin_errors(self) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.Warning, "Plugins that failed to load",
                          "These plugins were skipped; everything else works. Reinstall or remove them, "
                          "then restart effstudio.", QMessageBox.StandardButton.Close, self.window())
        box.setInformativeText(self.plugin_error_text())
        box.setDetailedText("\n\n".join(e.details or e.message for e in self.plugin_errors))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box
