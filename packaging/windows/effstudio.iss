; Inno Setup script for the effstudio Windows installer (Inno Setup 6).
;
; Build the one-folder bundle first (python packaging\build.py), then compile:
;   iscc packaging\windows\effstudio.iss
; or pass the version and folders explicitly:
;   iscc /DAppVersion=0.1.0 /DBundleDir=..\..\dist\effstudio /DIconFile=..\..\build\icons\effstudio.ico packaging\windows\effstudio.iss
; The installer is written to dist\installer\effstudio-<version>-setup.exe.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\effstudio"
#endif
#ifndef IconFile
  #define IconFile "..\..\build\icons\effstudio.ico"
#endif
#define AppName "effstudio"
#define AppExe "effstudio.exe"
#define CliExe "effstudio-cli.exe"

[Setup]
; a fixed AppId lets a new version upgrade the old one in place (keep it unchanged across releases)
AppId={{6E1F3C52-8B0D-4C4B-9F3A-2D5E7A1B9C40}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=The effstudio developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per-user install by default (no administrator rights); the dialog offers all users
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist\installer
OutputBaseFilename=effstudio-{#AppVersion}-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesAssociations=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "associate"; Description: "Open .safetensors, .onnx, .pt, .pth and .ckpt files with effstudio"; GroupDescription: "File associations:"

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Desktop lab for efficient Transformers"
; the self-test prints its report: run the console program in a command window that stays open
Name: "{group}\{#AppName} self-test"; Filename: "{cmd}"; Parameters: "/k ""{app}\{#CliExe}"" --self-test"; Comment: "Check the installation"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Registry]
; one ProgID for model files, then each extension points at it (HKA: per user or all users, as installed)
Root: HKA; Subkey: "Software\Classes\effstudio.model"; ValueType: string; ValueName: ""; ValueData: "Model file (effstudio)"; Flags: uninsdeletekey; Tasks: associate
Root: HKA; Subkey: "Software\Classes\effstudio.model\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\{#AppExe},0"; Tasks: associate
Root: HKA; Subkey: "Software\Classes\effstudio.model\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\{#AppExe}"" ""%1"""; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.safetensors\OpenWithProgids"; ValueType: string; ValueName: "effstudio.model"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.onnx\OpenWithProgids"; ValueType: string; ValueName: "effstudio.model"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.pt\OpenWithProgids"; ValueType: string; ValueName: "effstudio.model"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.pth\OpenWithProgids"; ValueType: string; ValueName: "effstudio.model"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\.ckpt\OpenWithProgids"; ValueType: string; ValueName: "effstudio.model"; ValueData: ""; Flags: uninsdeletevalue; Tasks: associate
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".safetensors"; ValueData: ""; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".onnx"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".pt"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".pth"; ValueData: ""
Root: HKA; Subkey: "Software\Classes\Applications\{#AppExe}\SupportedTypes"; ValueType: string; ValueName: ".ckpt"; ValueData: ""

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
