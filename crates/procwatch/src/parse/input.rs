//! evdev `struct input_event` records (the ACPI power button).

/// `EV_KEY`.
pub const EV_KEY: u16 = 1;
/// `KEY_POWER`.
pub const KEY_POWER: u16 = 116;

/// One input event (time stamp dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEvent {
    /// `type`.
    pub kind: u16,
    /// `code`.
    pub code: u16,
    /// `value`: for keys 1 = press, 0 = release, 2 = repeat.
    pub value: i32,
}

impl InputEvent {
    /// Whether this is a power-button press.
    pub fn is_power_press(&self) -> bool {
        self.kind == EV_KEY && self.code == KEY_POWER && self.value == 1
    }
}

/// Size of `struct input_event` for a given `struct timeval` size: 16 bytes
/// of time on 64-bit Linux, 8 on 32-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLayout {
    /// Bytes of time stamp before `type`.
    pub time_len: usize,
}

impl InputLayout {
    /// The layout of the target this was built for.
    pub const NATIVE: InputLayout = InputLayout {
        time_len: if cfg!(target_pointer_width = "64") {
            16
        } else {
            8
        },
    };

    /// One record's size.
    pub fn record_len(&self) -> usize {
        self.time_len.saturating_add(8)
    }
}

/// Parses whole records; trailing bytes short of a record are ignored (evdev
/// only ever returns whole records).
pub fn parse_input_events(bytes: &[u8], layout: InputLayout) -> Vec<InputEvent> {
    let len = layout.record_len();
    if len == 0 {
        return Vec::new();
    }
    bytes
        .chunks_exact(len)
        .filter_map(|rec| {
            let t = layout.time_len;
            let kind = rec.get(t..t.checked_add(2)?)?;
            let code = rec.get(t.checked_add(2)?..t.checked_add(4)?)?;
            let value = rec.get(t.checked_add(4)?..t.checked_add(8)?)?;
            Some(InputEvent {
                kind: u16::from_ne_bytes(kind.try_into().ok()?),
                code: u16::from_ne_bytes(code.try_into().ok()?),
                value: i32::from_ne_bytes(value.try_into().ok()?),
            })
        })
        .collect()
}

/// Encodes one record (tests, fuzz seeds, the fake button).
pub fn encode_input_event(ev: InputEvent, layout: InputLayout) -> Vec<u8> {
    let mut v = vec![0u8; layout.time_len];
    v.extend_from_slice(&ev.kind.to_ne_bytes());
    v.extend_from_slice(&ev.code.to_ne_bytes());
    v.extend_from_slice(&ev.value.to_ne_bytes());
    v
}
