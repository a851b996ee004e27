#!/usr/bin/env sh
# Install the effstudio bundle for the current user: start-menu entry, icons, "Open with" file types.
#
#   ./install.sh [BUNDLE_DIR]
#
# BUNDLE_DIR is the one-folder bundle (the folder holding the `effstudio` executable);
# by default the folder this script is in (an unpacked release .tar.gz), else dist/effstudio
# of a source checkout. Files go under ~/.local (PREFIX overrides it); nothing needs root.
# ./uninstall.sh removes them again.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -gt 0 ]; then
  bundle="$(cd "$1" && pwd)"
elif [ -x "$here/effstudio" ]; then
  bundle="$here"
else
  bundle="$(cd "$here/../.." && pwd)/dist/effstudio"
fi
if [ ! -x "$bundle/effstudio" ]; then
  echo "install.sh: no effstudio bundle in $bundle (build one with: python packaging/build.py)" >&2
  exit 1
fi
# the bundle's resources (desktop entry, icons, MIME types): PyInstaller puts them in _internal/
resources="$bundle/_internal/resources"
[ -d "$resources" ] || resources="$bundle/resources"
[ -d "$resources/linux" ] || { echo "install.sh: $bundle has no resources/linux folder" >&2; exit 1; }

prefix="${PREFIX:-$HOME/.local}"
share="$prefix/share"
app_dir="$prefix/lib/effstudio"
bin_dir="$prefix/bin"

echo "Installing effstudio into $app_dir"
mkdir -p "$prefix/lib" "$bin_dir" "$share/applications" "$share/mime/packages" "$share/metainfo"
if [ "$bundle" != "$app_dir" ]; then
  rm -rf "$app_dir.new"
  cp -R "$bundle" "$app_dir.new"
  rm -rf "$app_dir"
  mv "$app_dir.new" "$app_dir"
fi
ln -sf "$app_dir/effstudio" "$bin_dir/effstudio"

# the start-menu entry runs the installed executable by its full path (~/.local/bin may not be on PATH)
sed -e "s|^Exec=effstudio|Exec=\"$app_dir/effstudio\"|" -e "s|^TryExec=effstudio|TryExec=$app_dir/effstudio|" \
  "$resources/linux/effstudio.desktop" > "$share/applications/effstudio.desktop"
cp "$resources/linux/effstudio-mime.xml" "$share/mime/packages/effstudio-mime.xml"
cp "$resources/linux/io.github.effstudio.effstudio.metainfo.xml" "$share/metainfo/"
for icon in "$resources"/icons/hicolor/*/apps/effstudio.*; do
  size="$(basename "$(dirname "$(dirname "$icon")")")"
  mkdir -p "$share/icons/hicolor/$size/apps"
  cp "$icon" "$share/icons/hicolor/$size/apps/"
done

# refresh the caches that menus and file managers read (each tool is optional)
if command -v update-mime-database >/dev/null 2>&1; then update-mime-database "$share/mime" || true; fi
if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$share/applications" || true; fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
  gtk-update-icon-cache -q -f -t "$share/icons/hicolor" 2>/dev/null || true
fi

echo "effstudio is in the application menu; run it from a terminal as $bin_dir/effstudio"
case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "(add $bin_dir to PATH to type just 'effstudio')" ;; esac
echo "Check the installation with: $bin_dir/effstudio --self-test"
