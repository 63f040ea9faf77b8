//! Which file names a receiver accepts: plain names only, so that nothing outside its directory
//! can ever be named.
//!
//! Your task (stage 6; a first version in stage 1): [`check`], and [`to_nfc`] for the sender.

use crate::protocol::MAX_NAME_LEN;

/// The suffix of a file being received (`.NAME.ft-partial`).
pub const PARTIAL_SUFFIX: &str = ".ft-partial";

/// The suffix of the record of a partial file's verified chunks (`.NAME.ft-state`).
pub const STATE_SUFFIX: &str = ".ft-state";

/// Names Windows reserves for devices, with or without an extension: refused everywhere, so that
/// a directory received on Linux can be copied to Windows and so that no receiver on Windows
/// ever opens a device. Windows counts the superscript digits of Latin-1 (`¹`, `²`, `³`) as port
/// numbers too, and keeps `CONIN$` and `CONOUT$` for the console.
const DEVICES: [&str; 32] = [
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, `.` or `..`.
    #[error("the name {0:?} is not a file name")]
    NotAName(String),
    /// Holds `/`, `\`, `:` or starts like an absolute path.
    #[error("the name {0:?} holds a path separator: only plain names are accepted")]
    Separator(String),
    /// Holds a NUL or another control character.
    #[error("the name {0:?} holds a control character")]
    Control(String),
    /// A device name such as `CON` or `nul.txt`.
    #[error("the name {0:?} is a device name")]
    Device(String),
    /// Ends in a space or a dot, which Windows silently drops.
    #[error("the name {0:?} ends in a space or a dot")]
    TrailingDot(String),
    /// Ends like the receiver's own temporary files.
    #[error("the name {0:?} ends in a suffix the receiver keeps for its temporary files")]
    Reserved(String),
    /// Longer than [`MAX_NAME_LEN`] bytes.
    #[error("the name is {0} bytes long, longer than {MAX_NAME_LEN}")]
    TooLong(usize),
    /// Not in Unicode Normalization Form C: the same name could then arrive in two spellings.
    #[error("the name {0:?} is not in Unicode NFC (send it as {1:?})")]
    NotNfc(String, String),
}

/// Checks that `name` is a plain file name: not empty, `.` or `..`; no `/`, `\` or `:`; no
/// control character (NUL included); not a device name; no trailing space or dot; not ending in
/// [`PARTIAL_SUFFIX`] or [`STATE_SUFFIX`]; at most [`MAX_NAME_LEN`] bytes; in Unicode
/// Normalization Form C (NFC), so that `café` composed and `cafe` + a combining accent, which
/// macOS and most people take for one name, can never land as two files.
pub fn check(name: &str) -> Result<(), NameError> {
    // TODO: each rule of the doc above (the contract's "The receiver" lists them), in its order, as
    // its `NameError`; a device name is one of `DEVICES`, in any ASCII case, alone or as the part
    // before the first `.` (trailing spaces ignored); a name not in NFC carries `to_nfc(name)`, the
    // spelling to send instead. `char::is_control`, `eq_ignore_ascii_case`,
    // `unicode_normalization::is_nfc`.
    todo!()
}

/// `name` in Unicode Normalization Form C: what a sender sends, whatever spelling its file
/// system gave it (macOS's HFS+ gives NFD).
pub fn to_nfc(name: &str) -> String {
    // TODO: `name.nfc().collect()` (`use unicode_normalization::UnicodeNormalization`).
    todo!()
}
