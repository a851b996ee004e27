#!/usr/bin/env sh
# Remove what install.sh put under ~/.local (PREFIX overrides it). Runs, settings and caches
# in the user's data folders are kept; delete ~/.local/share/effstudio and ~/.cache/effstudio
# by hand to remove those too.
set -eu

prefix="${PREFIX:-$HOME/.local}"
share="$prefix/share"

rm -rf "$prefix/lib/effstudio"
# the command link, only when it is ours
if [ -L "$prefix/bin/effstudio" ]; then rm -f "$prefix/bin/effstudio"; fi
rm -f "$share/applications/effstudio.desktop" \
      "$share/mime/packages/effstudio-mime.xml" \
      "$share/metainfo/io.github.effstudio.effstudio.metainfo.xml"
for icon in "$share"/icons/hicolor/*/apps/effstudio.png "$share"/icons/hicolor/*/apps/effstudio.svg; do
  if [ -e "$icon" ]; then rm -f "$icon"; fi
done

if command -v update-mime-database >/dev/null 2>&1 && [ -d "$share/mime" ]; then
  update-mime-database "$share/mime" || true
fi
if command -v update-desktop-database >/dev/null 2>&1 && [ -d "$share/applications" ]; then
  update-desktop-database -q "$share/applications" || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1 && [ -d "$share/icons/hicolor" ]; then
  gtk-update-icon-cache -q -f -t "$share/icons/hicolor" 2>/dev/null || true
fi
echo "effstudio was removed from $prefix"
